"""Per-example attribution against auto-circuit's own EAP (the oracle) and IG completeness."""

import warnings

import pytest
import torch
from auto_circuit.data import PromptDataLoader, PromptDataset
from auto_circuit.prune_algos.mask_gradient import mask_gradient_prune_scores
from conftest import nan_row_for_first, random_examples

import auto_circuit_dcd as dcd
from auto_circuit_dcd.attribution import front as attribution
from auto_circuit_dcd.data import make_loader
from auto_circuit_dcd.model.task_metric import max_diff


def auto_circuit_eap(pm, loader):
    return mask_gradient_prune_scores(pm, loader, None, grad_function="logit",
                                      answer_function="avg_diff", mask_val=0.0)


BACKENDS = ["hooks", "fast"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["tiny-random", "tiny-random-attn-only", "tiny-random-gqa"])
def test_each_row_equals_auto_circuit_on_that_example_alone(name, backend):
    pm = dcd.make_patchable(dcd.load_model(name))
    examples = random_examples(5, lengths=(6, 8), seed=1)
    A = dcd.attribute(pm, make_loader(examples, batch_size=2), metric="avg_diff",
                      progress=False, backend=backend)
    assert A.meta["backend"] == backend
    assert A.shape == (5, pm.n_edges)
    for ex in examples:
        ref = A.layout.from_prune_scores(auto_circuit_eap(pm, make_loader([ex], 1)))
        row = A.scores[A.example_ids.index(ex.id)]
        torch.testing.assert_close(row, ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mean_of_rows_matches_auto_circuit_eap_on_the_same_examples(tiny_pm, backend):
    examples = random_examples(12, lengths=(7,), seed=2)
    loader = make_loader(examples, batch_size=4)  # three equal batches
    A = dcd.attribute(tiny_pm, loader, metric="avg_diff", progress=False, backend=backend)
    ref = A.layout.from_prune_scores(auto_circuit_eap(tiny_pm, loader))
    mean = A.scores.double().mean(0)
    # auto-circuit sums batch means: with 3 equal batches that is 3 x the mean.
    cos = torch.nn.functional.cosine_similarity(mean, ref.double(), dim=0)
    assert cos > 0.9999
    torch.testing.assert_close(mean * 3, ref.double(), rtol=1e-4, atol=1e-6)


def test_rows_follow_the_loader_and_keep_every_example(tiny_pm):
    examples = random_examples(7, lengths=(6, 9, 6), seed=3, groups=["a", "b"])
    loader = make_loader(examples, batch_size=3)
    A = dcd.attribute(tiny_pm, loader, progress=False)
    assert sorted(A.example_ids) == list(range(7))
    assert A.example_ids == loader.example_ids
    assert A.groups == [examples[i].group for i in A.example_ids]
    assert len(A.meta["clean_metric"]) == 7


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_diff_metric_matches_a_direct_gradient(tiny_pm, backend):
    """One edge by hand: (clean - corrupt source output) . d mu / d destination input."""
    ex = random_examples(1, lengths=(6,), seed=4, n_wrong=3)[0]
    A = dcd.attribute(tiny_pm, make_loader([ex], 1), metric="max_diff", progress=False,
                      backend=backend)
    model = tiny_pm.wrapped_model  # plain autograd through TransformerLens, no wrappers
    _, corrupt_cache = model.run_with_cache(ex.corrupt[None])
    cache = {}

    def leaf(t, hook):
        return t.detach().requires_grad_(True)

    def keep(t, hook):
        if t.requires_grad:
            t.retain_grad()
        cache[hook.name] = t
        return t

    with torch.enable_grad(), model.hooks(fwd_hooks=[
        ("blocks.0.hook_resid_pre", leaf),
        ("blocks.1.hook_q_input", keep),
        ("blocks.0.attn.hook_result", keep),
    ]):
        logits = model(ex.clean[None])[0, -1]
        mu = logits[ex.answers].mean() - logits[ex.wrong_answers].max()
        mu.backward()
    grad_q = cache["blocks.1.hook_q_input"].grad[0, :, 1]  # dest head 1: [pos, d]
    diff = (cache["blocks.0.attn.hook_result"][0, :, 0]
            - corrupt_cache["blocks.0.attn.hook_result"][0, :, 0])  # src A0.0
    expected = float((diff * grad_q).sum().detach())
    got = float(A.scores[0, A.edge_names.index("A0.0->A1.1.Q")])
    assert got == pytest.approx(expected, rel=1e-4, abs=1e-7)


def test_eap_ig_with_one_step_is_eap(tiny_pm):
    loader = make_loader(random_examples(4, seed=5), batch_size=2)
    eap = dcd.attribute(tiny_pm, loader, method="eap", progress=False)
    ig1 = dcd.attribute(tiny_pm, loader, method="eap-ig", ig_steps=1, progress=False)
    torch.testing.assert_close(eap.scores, ig1.scores)


@pytest.mark.parametrize("backend", BACKENDS)
def test_eap_ig_completeness_on_input_edges(tiny_pm, backend):
    """Edges out of the input embedding sum to the IG estimate of mu(clean) - mu(corrupt).

    Every path from the embedding to the output starts with one of its edges, so their
    scores sum to (x - x') . mean_k grad mu(x_k): a Riemann sum that tends to
    mu(clean) - mu(corrupt) as the number of steps grows.
    """
    examples = random_examples(3, lengths=(6,), seed=6)
    loader = make_loader(examples, batch_size=3)
    start_cols = [i for i, n in enumerate(tiny_pm_names(tiny_pm)) if n.startswith("Resid Start->")]
    model = tiny_pm.wrapped_model
    with torch.no_grad():
        mu_clean = torch.stack([max_diff(model(e.clean[None])[:, -1], _one(e)) for e in examples]).flatten()
        mu_corrupt = torch.stack([max_diff(model(e.corrupt[None])[:, -1], _one(e)) for e in examples]).flatten()
    target = mu_clean - mu_corrupt
    errors = []
    for steps in (4, 64):
        A = dcd.attribute(tiny_pm, loader, method="eap-ig", ig_steps=steps, progress=False,
                          backend=backend)
        got = A.scores[:, start_cols].double().sum(1)
        order = [A.example_ids.index(e.id) for e in examples]
        errors.append(float((got[order] - target.double()).abs().max()))
    assert errors[1] < errors[0]
    assert errors[1] < 0.02 * float(target.abs().max()) + 1e-4


def tiny_pm_names(pm):
    return dcd.AttributionMatrix(torch.zeros(1, pm.n_edges), [e.name for e in dcd.sorted_edges(pm)]).edge_names


def _one(example):
    class B:
        answers = example.answers[None]
        wrong_answers = example.wrong_answers[None]
    return B


def test_auto_circuit_loader_scores_every_example_of_its_dataset(tiny_pm):
    """24 examples, batch 16: auto-circuit's loader yields 16 (drop_last); all 24 are scored."""
    examples = random_examples(24, lengths=(6,), seed=7)
    ds = PromptDataset([e.clean for e in examples], [e.corrupt for e in examples],
                       [e.answers for e in examples], [e.wrong_answers for e in examples])
    ac_loader = PromptDataLoader(ds, seq_len=6, diverge_idx=0, batch_size=16)
    assert sum(b.clean.shape[0] for b in ac_loader) == 16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        A = dcd.attribute(tiny_pm, ac_loader, metric="avg_diff", progress=False)
    assert A.example_ids == list(range(24))
    # oracle: auto-circuit's EAP on each example alone, for rows of the batch it drops
    for i in (16, 20, 23):
        ref = A.layout.from_prune_scores(auto_circuit_eap(tiny_pm, make_loader([examples[i]], 1)))
        torch.testing.assert_close(A.scores[i], ref, rtol=1e-4, atol=1e-6)


def test_non_finite_rows_are_dropped_with_a_warning_or_refused(tiny_pm):
    examples = random_examples(4, lengths=(6,), seed=8)
    loader = make_loader(examples, batch_size=2)
    with nan_row_for_first(tiny_pm, examples):
        with pytest.raises(FloatingPointError, match="ids \\[0\\]"):
            dcd.attribute(tiny_pm, loader, progress=False)
        with pytest.warns(UserWarning, match="dropping 1 example"):
            A = dcd.attribute(tiny_pm, loader, progress=False, nan_tolerance=0.5)
    assert 0 not in A.example_ids and A.n_examples == 3
    assert torch.isfinite(A.scores).all()


def test_cache_resumes_after_interruption_and_loads_when_done(tiny_pm, tmp_path, monkeypatch):
    loader = make_loader(random_examples(6, lengths=(6,), seed=9), batch_size=2)
    reference = dcd.attribute(tiny_pm, loader, progress=False, backend="hooks")
    real = attribution.BACKENDS["hooks"]
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setitem(attribution.BACKENDS, "hooks", flaky)
    with pytest.raises(KeyboardInterrupt):
        dcd.attribute(tiny_pm, loader, cache_dir=tmp_path, progress=False, backend="hooks")
    calls.clear()
    monkeypatch.setitem(attribution.BACKENDS, "hooks",
                        lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    resumed = dcd.attribute(tiny_pm, loader, cache_dir=tmp_path, progress=False, backend="hooks")
    assert len(calls) == 2  # batch 0 came from disk
    torch.testing.assert_close(resumed.scores, reference.scores)
    calls.clear()
    again = dcd.attribute(tiny_pm, loader, cache_dir=tmp_path, progress=False, backend="hooks")
    assert calls == []
    torch.testing.assert_close(again.scores, reference.scores)
    assert again.edge_names == reference.edge_names


def test_float16_storage(tiny_pm):
    loader = make_loader(random_examples(2, seed=10), batch_size=2)
    A32 = dcd.attribute(tiny_pm, loader, progress=False)
    A16 = dcd.attribute(tiny_pm, loader, progress=False, dtype=torch.float16)
    assert A16.scores.dtype == torch.float16
    torch.testing.assert_close(A16.scores.float(), A32.scores, rtol=2e-3, atol=1e-4)


def test_bad_arguments_are_explained(tiny_pm):
    loader = make_loader(random_examples(2, seed=11), batch_size=2)
    with pytest.raises(ValueError, match="method must be one of"):
        dcd.attribute(tiny_pm, loader, method="acdc")
    with pytest.raises(ValueError, match="metric must be one of"):
        dcd.attribute(tiny_pm, loader, metric="kl")
    with pytest.raises(ValueError, match="backend must be one of"):
        dcd.attribute(tiny_pm, loader, backend="gpu")
    with pytest.raises(TypeError, match="PatchableModel"):
        dcd.attribute(tiny_pm.wrapped_model, loader)


def test_steps_are_split_into_even_stacks_that_fit():
    from auto_circuit_dcd.attribution.passes import step_stacks

    assert step_stacks(5, one_step=100, cap=1000) == [range(0, 5)]
    assert step_stacks(5, one_step=100, cap=400) == [range(0, 3), range(3, 5)]  # not 4 + 1
    assert step_stacks(10, one_step=100, cap=300) == [range(0, 3), range(3, 6), range(6, 8),
                                                      range(8, 10)]
    assert step_stacks(3, one_step=100, cap=1) == [range(0, 1), range(1, 2), range(2, 3)]
    assert step_stacks(1, one_step=10**12, cap=1) == [range(0, 1)]


def test_max_stack_gib_must_be_positive(tiny_pm):
    loader = make_loader(random_examples(2, seed=14), batch_size=2)
    with pytest.raises(ValueError, match="max_stack_gib must be positive"):
        dcd.attribute(tiny_pm, loader, method="eap-ig", max_stack_gib=0.0)
