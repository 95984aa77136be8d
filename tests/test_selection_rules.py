"""Selection rules and conventions in evaluation and the main job.

Oracles: a hand ranking of distinct random scores, a path search over edge names written
here (not the package's graph), auto-circuit's ``run_circuits`` on the evaluated edge sets,
hand-computed CMD areas, auto-circuit's ACDC run on the baselines' own examples.
"""

import json

import numpy as np
import pytest
import torch
from conftest import random_examples, reachable

import auto_circuit_dcd as dcd
from auto_circuit_dcd.cli import main
from auto_circuit_dcd.evaluation import evaluate_circuits
from auto_circuit_dcd.metrics.convention import MIB_PARITY, make_convention
from auto_circuit_dcd.model.edges import edge_layout
from auto_circuit_dcd.model.task_metric import METRICS


def on_paths_by_name(names, mask):
    """Bool mask: edges of ``mask`` on a ``Resid Start`` -> ``Resid End`` path of ``mask``'s
    edges, nodes read from the names ``src->dest`` (a head's ``.Q/.K/.V`` input is the head)."""
    def node(dest):
        head, _, letter = dest.rpartition(".")
        return head if letter in ("Q", "K", "V") else dest

    pairs = [(n.split("->")[0], node(n.split("->")[1])) for n in names]
    chosen = [pairs[j] for j in np.flatnonzero(mask)]

    fwd = reachable("Resid Start", lambda u: [d for s, d in chosen if s == u])
    back = reachable("Resid End", lambda v: [s for s, d in chosen if d == v])
    return np.array([bool(m) and s in fwd and d in back for m, (s, d) in zip(mask, pairs)])


@pytest.fixture(scope="module")
def loader():
    return dcd.make_loader(random_examples(8, lengths=(6,), seed=5), batch_size=4)


def run_circuits_f(pm, loader, mask):
    """f of an edge set by auto-circuit's own patching: PruneScores 1 on the set, 0 elsewhere,
    ``run_circuits`` at the set's size (its top-|set| edges are exactly the set)."""
    from auto_circuit.prune import run_circuits
    from auto_circuit.types import AblationType, PatchType

    _, layout = edge_layout(pm)
    size = int(mask.sum())
    ps = layout.to_prune_scores(torch.as_tensor(mask, dtype=torch.float32))
    outs = run_circuits(pm, loader, [0, size, len(mask)], ps, patch_type=PatchType.TREE_PATCH,
                        ablation_type=AblationType.RESAMPLE)
    mu = {n: torch.cat([METRICS["max_diff"](outs[n][b.key], b) for b in loader]).double().mean()
          for n in outs}
    return float((mu[size] - mu[0]) / (mu[len(mask)] - mu[0]))


@pytest.mark.parametrize("selection,ranking", [("topn", "signed"), ("topn-prune", "abs"),
                                               ("topn-fill", "abs"), ("greedy", "signed")])
def test_each_size_holds_the_rules_edges_and_auto_circuit_agrees_on_f(tiny_pm, loader,
                                                                       selection, ranking):
    names, _ = edge_layout(tiny_pm)
    scores = torch.randn(len(names), generator=torch.Generator().manual_seed(7)).double()
    key = scores.numpy() if ranking == "signed" else scores.abs().numpy()  # distinct: no ties
    res = evaluate_circuits(tiny_pm, loader, {"c": scores}, [0.02, 0.05, 0.2],
                            selection=selection, ranking=ranking)["c"]
    assert (res.selection, res.ranking) == (selection, ranking)
    for j, count in enumerate(res.requested_counts.tolist()):
        got = res.edge_sets[j]
        top = np.zeros(len(names), dtype=bool)
        top[np.argsort(-key)[:count]] = True
        if selection == "topn":
            assert np.array_equal(got, top)
        elif selection == "topn-prune":
            assert np.array_equal(got, on_paths_by_name(names, top))
        elif selection == "topn-fill":  # the smallest top-m whose on-path edges reach count
            for m in range(count, len(names) + 1):
                top_m = np.zeros(len(names), dtype=bool)
                top_m[np.argsort(-key)[:m]] = True
                if on_paths_by_name(names, top_m).sum() >= count:
                    break
            assert np.array_equal(got, on_paths_by_name(names, top_m)) and got.sum() >= count
        else:  # grown from the logits: at most count edges, every one on a path
            assert got.sum() <= count and np.array_equal(got, on_paths_by_name(names, got))
        assert res.achieved_counts[j] == got.sum()
        if 0 < got.sum():
            # float32 forwards of the same model on the same batches, summed in other orders
            assert res.f[j] == pytest.approx(run_circuits_f(tiny_pm, loader, got), abs=1e-4)


def test_pruning_changes_the_size_not_the_behaviour_under_resampling(tiny_pm, loader):
    """Under resample ablation an edge off every path of the circuit carries the corrupted
    value whether kept or patched (its source sees only corrupted inputs, or its destination
    reaches no logit), so topn-prune has topn's f with fewer edges (float32 forwards in
    other groupings: 1e-4)."""
    names, _ = edge_layout(tiny_pm)
    scores = torch.randn(len(names), generator=torch.Generator().manual_seed(3)).double()
    grid = [0.02, 0.05, 0.1, 0.2]
    top, pruned = (evaluate_circuits(tiny_pm, loader, {"c": scores}, grid, selection=rule)["c"]
                   for rule in ("topn", "topn-prune"))
    np.testing.assert_allclose(pruned.f, top.f, atol=1e-4)
    assert (pruned.achieved_counts <= top.achieved_counts).all()
    assert (pruned.achieved_counts < top.achieved_counts).any()  # some edges were dropped


def test_conventions_and_their_contradictions():
    default = make_convention()
    assert (default.selection, default.cpr_ranking, default.cmd_ranking, default.cmd_form) == (
        "topn", "abs", "abs", "one-sided")
    mib = make_convention(mib_parity=True)
    assert mib is MIB_PARITY and mib.rankings() == ["signed", "abs"]
    assert (mib.selection, mib.cmd_form) == ("topn-prune", "two-sided")
    own = make_convention("greedy", "signed", "two-sided")
    assert own.rankings() == ["signed"] and own.cmd_ranking == "signed"
    # hand-computed: f = 0, 1.5, 1 at p = 0, 0.5, 1; |1 - f| = 1, 0.5, 0 -> 0.5; one-sided 0.25
    curve = ([0.0, 0.5, 1.0], [0.0, 1.5, 1.0])
    assert mib.cmd(curve) == pytest.approx(0.5) and make_convention().cmd(curve) == 0.25
    for bad in ({"mib_parity": True, "ranking": "abs"},
                {"mib_parity": True, "cmd_form": "one-sided"}, {"selection": "top-k"},
                {"ranking": "median"}, {"cmd_form": "both"}):
        with pytest.raises(ValueError):
            make_convention(**bad)


#: 40 prompts: under --preprocessing auto their 32 training rows give one cluster, so the
#: runs that build per-cluster and K-random circuits name a space
TOY_RUN = ["run", "--quiet", "--n", "40", "--clusterer", "kmeans", "--max-clusters", "3",
           "--edge-fractions", "0.02,0.05,0.1,0.3,1", "--stability-resamples", "2",
           "--preprocessing", "l2"]


def toy_run(out, *extra):
    assert main(TOY_RUN + ["--out", str(out), *extra]) == 0
    from safetensors.torch import load_file

    rep = json.loads((out / "report.json").read_text())
    return rep, load_file(str(out / "circuits.safetensors")), json.loads(
        (out / "circuits.json").read_text())


def check_connected(rep, saved, listing):
    """Every circuit evaluated, at every size where it has edges, lies on input-to-logits
    paths; the report's achieved counts are the sizes of the saved sets."""
    names = listing["edge_names"]
    sel = rep["circuit_selection"]
    for ranking, counts in sel["achieved_edge_counts"].items():
        for name, achieved in counts.items():
            sets = saved[f"{name}.edges.{ranking}"].numpy()
            assert sets.sum(1).tolist() == achieved
            for row in sets:
                if row.any():
                    assert np.array_equal(row, on_paths_by_name(names, row)), (name, ranking)


def test_toy_job_greedy_under_mib_parity(tmp_path):
    rep, saved, listing = toy_run(tmp_path / "out", "--selection", "greedy", "--mib-parity")
    sel = rep["circuit_selection"]
    assert (sel["rule"], sel["ranking"], sel["cmd_ranking"], sel["cmd"]) == (
        "greedy", "signed", "abs", "two-sided")
    assert "mib-parity" in sel["convention"]
    check_connected(rep, saved, listing)
    p = np.array(rep["edge_fractions"])
    single = rep["single"]
    gap = np.abs(1 - np.array(single["faithfulness_cmd"]))  # the |score|-ranked curve
    assert single["cmd"] == pytest.approx(float(np.sum(np.diff(p) * (gap[1:] + gap[:-1]) / 2)))
    f = np.array(single["faithfulness"])  # the signed-ranked curve
    assert single["cpr"] == pytest.approx(float(np.sum(np.diff(p) * (f[1:] + f[:-1]) / 2)))
    st = rep["stability"]
    assert st["n_resamples"] == 2 and st["ari_mean"] == pytest.approx(np.mean(st["ari"]))
    assert st["ari_mean"] >= 0.9  # two planted tasks: the same two groups come back
    assert set(st["co_assignment"]) == {str(c) for c in rep["cross_faithfulness"]["labels"]}
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Circuit selection and cluster stability" in html and "|1 - faithfulness|" in html


@pytest.mark.slow
def test_toy_job_with_acdc_builds_its_baselines_with_acdc(tmp_path, monkeypatch):
    """Oracle: what auto-circuit's ACDC returned when run on all training examples (the
    single circuit) and on each K-random part (the seeded split, computed here), its inf
    scores mapped to twice the largest finite |score|; ACDC is watched, not re-run."""
    import dataclasses
    from functools import partial

    import auto_circuit.prune_algos.ACDC as acdc_module
    from auto_circuit.prune_algos.prune_algos import PRUNE_ALGO_DICT

    calls = []
    real = acdc_module.acdc_prune_scores

    def watched(model, loader, official_edges, **kw):
        out = real(model, loader, official_edges, **kw)
        calls.append((loader.example_ids, {k: v.detach().clone() for k, v in out.items()}))
        return out

    algo = PRUNE_ALGO_DICT["ACDC"]
    # still recognised as ACDC (one batch per loader) by the package
    monkeypatch.setattr(acdc_module, "acdc_prune_scores", watched)
    monkeypatch.setitem(PRUNE_ALGO_DICT, "ACDC", dataclasses.replace(
        algo, func=partial(watched, *algo.func.args, **algo.func.keywords)))
    rep, saved, listing = toy_run(tmp_path / "out", "--circuit-method", "ACDC",
                                  "--selection", "topn-prune")
    assert rep["circuit_selection"]["base_algo"] == "ACDC"
    assert rep["circuit_selection"]["circuit_method"] == "ACDC"
    assert rep["circuit_selection"]["cluster_method"] == "eap"
    check_connected(rep, saved, listing)
    train, k = rep["example_ids"], rep["n_clusters"]
    parts = np.array_split(np.random.RandomState(42).permutation(len(train)), k)
    expected = {"single": sorted(train)}
    for i, part in enumerate(parts):
        expected[f"k_random_{i}"] = sorted(train[j] for j in part)
    by_examples = {tuple(sorted(ids)): ps for ids, ps in calls}
    assert len(calls) == 2 * k + 1  # clusters, single, K-random: every circuit by ACDC
    pm = dcd.make_patchable(dcd.load_model("toy-two-task"))
    _, layout = edge_layout(pm)
    for name, ids in expected.items():
        ref = layout.from_prune_scores(by_examples[tuple(ids)]).double()
        finite = torch.isfinite(ref)
        assert (~finite).any()  # ACDC kept some edges to the end: the mapping is exercised
        expect = torch.where(finite, ref, 2 * ref[finite].abs().max() * torch.sign(ref))
        torch.testing.assert_close(saved[name].double(), expect.float().double())
