"""Faithfulness, multi-circuit and cross-faithfulness against auto-circuit's own patching."""

import numpy as np
import pytest
import torch
from conftest import failing_after, random_examples

import auto_circuit_dcd as dcd
from auto_circuit_dcd.evaluation import MIB_GRID, evaluate_circuits, faithfulness
from auto_circuit_dcd.metrics import (
    combine_circuits,
    cross_faithfulness,
    multi_circuit_faithfulness,
)
from auto_circuit_dcd.model.edges import edge_layout, sorted_edges
from auto_circuit_dcd.model.task_metric import METRICS


@pytest.fixture(scope="module")
def loader():
    return dcd.make_loader(random_examples(10, lengths=(6, 7), seed=3), batch_size=4)


def _direct_mu(pm, loader, metric="max_diff"):
    """Metric of the plain clean and corrupt runs, per example in loader order."""
    clean, corrupt = [], []
    with torch.inference_mode():
        for b in loader:
            clean.append(METRICS[metric](pm(b.clean)[pm.out_slice], b))
            corrupt.append(METRICS[metric](pm(b.corrupt)[pm.out_slice], b))
    return torch.cat(clean).double().numpy(), torch.cat(corrupt).double().numpy()


def _hand_metric(logits, answers, wrong):
    return logits[answers].mean() - logits[wrong].max()


def test_empty_circuit_is_zero_full_circuit_is_one(tiny_pm, loader):
    n = len(tiny_pm.edges)
    r = faithfulness(tiny_pm, loader, torch.randn(n), edge_fractions=[0.0, 1.0])
    assert r.requested_counts.tolist() == [0, n]
    assert r.achieved_counts.tolist() == [0, n]
    assert r.f[0] == pytest.approx(0.0, abs=1e-6)
    assert r.f[1] == pytest.approx(1.0, abs=1e-5)
    # independent oracles: the full model is the plain clean run; with every edge patched
    # by its corrupted activation the model computes exactly the corrupted run.
    clean, corrupt = _direct_mu(tiny_pm, loader)
    np.testing.assert_allclose(r.mu_full, clean, atol=1e-5)
    np.testing.assert_allclose(r.mu_empty, corrupt, atol=1e-4)
    np.testing.assert_allclose(r.mu_circuit[:, 1], clean, atol=1e-4)
    # mu is the spec's: correct logit - max wrong logit, computed by hand for one example
    e = loader.examples[0]
    with torch.inference_mode():
        logits = tiny_pm(e.clean[None])[tiny_pm.out_slice][0]
    i = r.example_ids.index(e.id)
    assert r.mu_full[i] == pytest.approx(float(_hand_metric(logits, e.answers, e.wrong_answers)),
                                         abs=1e-5)
    assert sorted(r.example_ids) == list(range(10))  # every example kept


def test_hand_built_circuit_matches_patch_mode(tiny_pm, loader):
    """A named edge set, patched with auto-circuit's own patch_mode(edges=...)."""
    from auto_circuit.types import AblationType
    from auto_circuit.utils.ablation_activations import src_ablations
    from auto_circuit.utils.graph_utils import patch_mode

    edges = sorted_edges(tiny_pm)
    n = len(edges)
    # head A0.0 reading the corrupted positions, to the logits directly and through MLP 1
    chosen = [0, 2, 4, 34, 39, 40, 45]
    assert [edges[i].name for i in chosen] == [
        "Resid Start->A0.0.K", "Resid Start->A0.0.Q", "Resid Start->A0.0.V", "A0.0->MLP 1",
        "Resid Start->Resid End", "A0.0->Resid End", "MLP 1->Resid End"]
    scores = torch.zeros(n)
    scores[chosen] = torch.linspace(1.0, 2.0, len(chosen)) * torch.tensor(
        [1, -1, 1, -1, 1, -1, 1], dtype=torch.float)  # signs must not matter
    frac = len(chosen) / n
    r = faithfulness(tiny_pm, loader, scores, edge_fractions=[frac])
    assert r.achieved_counts.tolist() == [len(chosen)]
    outside = [e.name for i, e in enumerate(edges) if i not in chosen]
    expected = []
    for b in loader:
        patch = src_ablations(tiny_pm, b.corrupt, AblationType.RESAMPLE)
        with patch_mode(tiny_pm, patch, edges=outside), torch.inference_mode():
            expected.append(METRICS["max_diff"](tiny_pm(b.clean)[tiny_pm.out_slice], b))
    # patch_mode(edges=...) leaves masks set; put them back to 0 for the other tests
    for w in tiny_pm.dest_wrappers:
        torch.nn.init.constant_(w.patch_mask, 0.0)
    expected = torch.cat(expected).double().numpy()
    np.testing.assert_allclose(r.mu_circuit[:, 0], expected, atol=1e-5)
    denom = r.mu_full.mean() - r.mu_empty.mean()
    mean_f = (expected.mean() - r.mu_empty.mean()) / denom
    # mu agrees with patch mode to 1e-5 (above; float32 sums in another order), so f does
    # to 1e-5 / |denominator|
    assert r.f[0] == pytest.approx(mean_f, abs=1e-5 / abs(denom))
    assert abs(r.f[0] - 1) > 0.01 and abs(r.f[0]) > 0.01, r.f  # a real partial circuit


@pytest.mark.parametrize("ablation,ac_ablation", [("resample", "RESAMPLE"), ("zero", "ZERO")])
def test_matches_run_circuits_with_ties(tiny_pm, loader, ablation, ac_ablation):
    """Counts achieved under ties and per-example outputs agree with run_circuits."""
    from auto_circuit.prune import run_circuits
    from auto_circuit.types import AblationType, PatchType

    n = len(tiny_pm.edges)
    _, layout = edge_layout(tiny_pm)
    g = torch.Generator().manual_seed(1)
    scores = torch.randint(0, 6, (n,), generator=g).float() - 2.5  # many ties in |s|
    ps = layout.to_prune_scores(scores)
    fractions = [0.05, 0.2, 0.5]
    r = faithfulness(tiny_pm, loader, ps, edge_fractions=fractions, ablation=ablation,
                     metric="avg_diff")
    counts = [int(np.floor(p * n)) for p in fractions]
    assert r.requested_counts.tolist() == counts
    outs = run_circuits(tiny_pm, loader, counts, ps, patch_type=PatchType.TREE_PATCH,
                        ablation_type=AblationType[ac_ablation])
    assert sorted(outs) == sorted(set(r.achieved_counts.tolist()))
    assert any(a > c for a, c in zip(r.achieved_counts, counts))  # ties did collapse
    for j, achieved in enumerate(r.achieved_counts.tolist()):
        mu = torch.cat([METRICS["avg_diff"](outs[achieved][b.key], b) for b in loader])
        np.testing.assert_allclose(r.mu_circuit[:, j], mu.double().numpy(), atol=1e-5)


def test_inputs_and_masks_restored_also_on_error(tiny_pm, loader, monkeypatch):
    n = len(tiny_pm.edges)
    _, layout = edge_layout(tiny_pm)
    before = {w.module_name: torch.rand_like(w.patch_mask) for w in tiny_pm.dest_wrappers}
    for w in tiny_pm.dest_wrappers:
        w.patch_mask.data = before[w.module_name].clone()
    ps = layout.to_prune_scores(torch.randn(n))
    ps_copy = {k: v.clone() for k, v in ps.items()}
    faithfulness(tiny_pm, loader, ps, edge_fractions=[0.1, 0.5])
    for w in tiny_pm.dest_wrappers:
        assert torch.equal(w.patch_mask.data, before[w.module_name])
        assert not w.patch_mode
    assert all(torch.equal(ps[k], ps_copy[k]) for k in ps)

    failing = failing_after(4, METRICS["max_diff"])
    monkeypatch.setitem(METRICS, "max_diff", failing)
    with pytest.raises(RuntimeError, match="boom"):
        faithfulness(tiny_pm, loader, ps, edge_fractions=[0.1, 0.5])
    assert failing.calls == 4
    for w in tiny_pm.dest_wrappers:
        assert torch.equal(w.patch_mask.data, before[w.module_name])
        assert not w.patch_mode and w.patch_src_outs is None
    for w in tiny_pm.dest_wrappers:
        torch.nn.init.constant_(w.patch_mask, 0.0)


def test_shared_evaluation_equals_single(tiny_pm, loader):
    n = len(tiny_pm.edges)
    circuits = {"a": torch.randn(n), "b": torch.randn(n).numpy()}
    both = evaluate_circuits(tiny_pm, loader, circuits, MIB_GRID)
    for k, v in circuits.items():
        alone = faithfulness(tiny_pm, loader, v)
        np.testing.assert_allclose(both[k].mu_circuit, alone.mu_circuit, atol=1e-6)
        np.testing.assert_allclose(both[k].f, alone.f, atol=1e-6)
    assert both["a"].mu_circuit.shape == (10, len(MIB_GRID))


def test_multi_circuit_oracle_and_routed(tiny_pm, loader):
    n = len(tiny_pm.edges)
    g = torch.Generator().manual_seed(5)
    circuits = {0: torch.randn(n, generator=g), 1: torch.randn(n, generator=g)}
    routing = [i % 2 for i in range(10)]
    res = multi_circuit_faithfulness(tiny_pm, loader, circuits, routing=routing,
                                     edge_fractions=[0.1, 0.2, 0.5])
    a, b = res.per_circuit[0], res.per_circuit[1]
    full, empty = a.mu_full.mean(), a.mu_empty.mean()
    oracle = (np.maximum(a.mu_circuit, b.mu_circuit).mean(0) - empty) / (full - empty)
    np.testing.assert_allclose(res.oracle_f, oracle, atol=1e-9)
    pick = np.where(np.array(routing)[:, None] == 0, a.mu_circuit, b.mu_circuit)
    np.testing.assert_allclose(res.routed_f, (pick.mean(0) - empty) / (full - empty), atol=1e-9)
    # routing everything to one circuit gives that circuit's own curve
    only_a = combine_circuits(res.per_circuit, routing=[0] * 10)
    np.testing.assert_allclose(only_a.routed_f, a.f, atol=1e-12)
    # routing by example id; unknown label (-1) needs a fallback
    by_id = dict.fromkeys(a.example_ids, -1)
    with pytest.raises(ValueError, match="fallback"):
        combine_circuits(res.per_circuit, routing=by_id)
    np.testing.assert_allclose(combine_circuits(res.per_circuit, by_id, fallback=1).routed_f,
                               b.f, atol=1e-12)
    if full > empty:  # mean of max >= max of means
        assert np.all(res.oracle_f >= np.maximum(a.f, b.f) - 1e-12)


def _result(mu_circuit, mu_full, mu_empty):
    from auto_circuit_dcd.evaluation.faithfulness import FaithfulnessResult

    mu = np.asarray(mu_circuit, dtype=float)[:, None]
    return FaithfulnessResult(
        fractions=np.array([0.05]), requested_counts=np.array([1]),
        achieved_counts=np.array([1]), f=np.array([np.nan]), mu_circuit=mu,
        mu_full=np.asarray(mu_full, dtype=float), mu_empty=np.asarray(mu_empty, dtype=float),
        example_ids=list(range(len(mu))), n_edges=20)


def test_routed_faithfulness_with_noise_excluded_or_sent_to_a_fallback():
    """Four test examples, the last routed to -1 (noise); values chosen by hand."""
    full, empty = [2.0, 2.0, 2.0, 2.0], [0.0, 0.0, 0.0, 0.0]
    results = {0: _result([1.0, 1.0, 0.0, 2.0], full, empty),
               1: _result([0.0, 0.0, 2.0, 0.0], full, empty)}
    routing = [0, 0, 1, -1]
    excluded = combine_circuits(results, routing, exclude=(-1,))
    # three routed examples: mu = 1, 1, 2 -> mean 4/3; full 2, empty 0 -> f = 2/3
    np.testing.assert_allclose(excluded.routed_f, [2 / 3])
    assert excluded.n_excluded == 1 and excluded.routing.tolist() == [0, 0, 1, -1]
    fell_back = combine_circuits(results, routing, fallback=1)
    # the noise example takes circuit 1: mu = 1, 1, 2, 0 -> mean 1 -> f = 1/2
    np.testing.assert_allclose(fell_back.routed_f, [0.5])
    assert fell_back.n_excluded == 0
    # the oracle ignores routing: max per example 1, 1, 2, 2 -> f = 3/4
    np.testing.assert_allclose(excluded.oracle_f, [0.75])
    nothing = combine_circuits(results, [-1] * 4, exclude=(-1,))
    assert np.isnan(nothing.routed_f).all() and nothing.n_excluded == 4


def test_cross_faithfulness_diagonal_and_orientation(tiny_pm):
    ex = random_examples(12, lengths=(6,), seed=7, groups=["x", "y"])
    loaders = {grp: dcd.make_loader([e for e in ex if e.group == grp], batch_size=4)
               for grp in ("x", "y")}
    n = len(tiny_pm.edges)
    g = torch.Generator().manual_seed(0)
    circuits = {"x": torch.randn(n, generator=g), "y": torch.randn(n, generator=g)}
    cross = cross_faithfulness(tiny_pm, circuits, loaders, p=0.5)
    assert cross.row_labels == ["x", "y"] and cross.col_labels == ["x", "y"]
    assert cross.cpr_matrix is None
    for i, row in enumerate(("x", "y")):
        for j, col in enumerate(("x", "y")):
            single = faithfulness(tiny_pm, loaders[col], circuits[row], edge_fractions=[0.5])
            assert cross.matrix[i, j] == pytest.approx(single.f[0], abs=1e-5)
    # rows are circuits, columns test sets: the matrix is not symmetric here
    assert abs(cross.matrix[0, 1] - cross.matrix[1, 0]) > 0.05
    curves = cross_faithfulness(tiny_pm, circuits, loaders, p=0.5, edge_fractions=[0.0, 0.2, 1.0])
    np.testing.assert_allclose(curves.matrix, cross.matrix, atol=1e-9)
    assert curves.cpr_matrix.shape == (2, 2)
    assert curves.results[("x", "y")].fractions.tolist() == [0.0, 0.2, 0.5, 1.0]


def test_mean_ablation_values(tiny_pm):
    """With every edge patched, the logits' input is the sum of every source's mean
    corrupted output, i.e. the mean corrupted final residual (the biases outside the
    graph are constants): mu(empty) = metric(unembed(ln_final(mean_j resid_j)))."""
    examples = random_examples(6, lengths=(6,), seed=9)
    one_len = dcd.make_loader(examples, batch_size=4)
    n = len(tiny_pm.edges)
    r = faithfulness(tiny_pm, one_len, torch.randn(n), edge_fractions=[0.0, 1.0],
                     ablation="mean")
    model = tiny_pm.wrapped_model
    with torch.no_grad():
        corrupt = torch.stack([e.corrupt for e in examples])
        resid = model(corrupt, stop_at_layer=model.cfg.n_layers).mean(0, keepdim=True)
        logits = model.unembed(model.ln_final(resid))[0, -1]
        clean = model(torch.stack([e.clean for e in examples]))[:, -1]
    by_id = {e.id: e for e in examples}

    def mu(lg, e):
        return float(lg[e.answers].max() - lg[e.wrong_answers].max())

    expect_empty = [mu(logits, by_id[i]) for i in r.example_ids]
    expect_full = [mu(clean[i], by_id[i]) for i in r.example_ids]
    # float32 forwards of a 2-layer model, mean of 6 residuals: 1e-5 absolute
    np.testing.assert_allclose(r.mu_empty, expect_empty, atol=1e-5)
    np.testing.assert_allclose(r.mu_circuit[:, 0], expect_empty, atol=1e-5)  # 0 edges kept
    np.testing.assert_allclose(r.mu_full, expect_full, atol=1e-5)
    assert np.ptp(expect_empty) > 0.1  # one patched input, each example's own answers


def test_bad_faithfulness_input(tiny_pm):
    one_len = dcd.make_loader(random_examples(6, lengths=(6,), seed=9), batch_size=4)
    n = len(tiny_pm.edges)
    two_len = dcd.make_loader(random_examples(6, lengths=(6, 7), seed=9), batch_size=4)
    with pytest.raises(ValueError, match="one token length"):
        faithfulness(tiny_pm, two_len, torch.randn(n), ablation="mean")
    with pytest.raises(ValueError, match="scores"):
        faithfulness(tiny_pm, one_len, torch.randn(n + 1))
    with pytest.raises(ValueError, match="ablation"):
        faithfulness(tiny_pm, one_len, torch.randn(n), ablation="nope")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        faithfulness(tiny_pm, one_len, torch.randn(n), edge_fractions=[1.5])
