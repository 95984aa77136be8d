"""The flag-free patched forward against auto-circuit's own patch mode, the oracle.

Every comparison is per example: ``mu`` of the fast backend equal to patch mode's to 1e-4
relative. Both run float32 sums in different orders (patch mode adds each destination's
masked differences in one einsum, the fast path adds a running sum and a sparse
correction), which moves ``mu`` by about 1e-6 of its size on these models.
"""

from typing import Any

import numpy as np
import pytest
import torch
from conftest import SMOLLM2_IOI, failing_after, random_examples
from test_fast_attribution import MODELS, combined_qkv_model

import auto_circuit_dcd as dcd
from auto_circuit_dcd.circuits.selection import top_mask
from auto_circuit_dcd.data import load_examples, make_loader
from auto_circuit_dcd.evaluation import evaluate_circuits
from auto_circuit_dcd.evaluation import patched as patched_mod
from auto_circuit_dcd.evaluation.faithfulness import edge_set_metrics
from auto_circuit_dcd.evaluation.patched import PatchedForward, fast_unsupported_reason, stacks
from auto_circuit_dcd.model.edges import edge_layout, sorted_edges
from auto_circuit_dcd.model.task_metric import METRICS

# sizes that put destination modules in both forms: small ones sparse, large ones in the
# complement form, middle ones mixed across Q/K/V of one layer (scores scaled per module)
FRACTIONS = [0.0, 0.02, 0.1, 0.3, 0.45, 0.6, 0.85, 0.97, 1.0]


def _tolerance(mu: np.ndarray) -> dict:
    return dict(rtol=1e-4, atol=1e-4 * float(np.abs(mu).max()))


def _scores(pm: Any, seed: int) -> torch.Tensor:
    """Random scores, scaled per destination module so circuits are dense in some modules
    and sparse in others at the same size."""
    g = torch.Generator().manual_seed(seed)
    _, layout = edge_layout(pm)
    vec = torch.randn(layout.n_edges, generator=g)
    for _name, _shape, a, b in layout.blocks:
        vec[a:b] *= float(torch.empty(1).log_normal_(0.0, 1.5, generator=g))
    return vec


@pytest.fixture(scope="module", params=sorted(MODELS))
def zoo_pm(request):
    model = MODELS[request.param]()
    model.eval()
    model.requires_grad_(False)
    return dcd.make_patchable(model)


@pytest.fixture(scope="module")
def zoo_loader():
    return make_loader(random_examples(5, lengths=(6, 7), seed=11), batch_size=3)


def _assert_same(fast: Any, ref: Any) -> None:
    np.testing.assert_allclose(fast.mu_full, ref.mu_full, **_tolerance(ref.mu_full))
    np.testing.assert_allclose(fast.mu_empty, ref.mu_empty, **_tolerance(ref.mu_empty))
    np.testing.assert_allclose(fast.mu_circuit, ref.mu_circuit, **_tolerance(ref.mu_circuit))


@pytest.mark.parametrize("ablation", ["resample", "zero", "mean"])
def test_fast_equals_patch_mode_on_the_model_zoo(zoo_pm, zoo_loader, ablation):
    assert fast_unsupported_reason(zoo_pm) is None, fast_unsupported_reason(zoo_pm)
    loader = zoo_loader
    if ablation == "mean":  # one token length
        loader = make_loader(random_examples(4, lengths=(7,), seed=12), batch_size=3)
    circuits = {"a": _scores(zoo_pm, 1), "b": _scores(zoo_pm, 2)}
    ref = evaluate_circuits(zoo_pm, loader, circuits, FRACTIONS, ablation=ablation,
                            backend="patch-mode")
    fast = evaluate_circuits(zoo_pm, loader, circuits, FRACTIONS, ablation=ablation,
                             backend="fast")
    for lab in circuits:
        _assert_same(fast[lab], ref[lab])
        # a real signal: the partial circuits move mu away from both ends
        mid = ref[lab].mu_circuit[:, 1:-1]
        assert np.abs(mid - ref[lab].mu_full[:, None]).max() > 1e-3
        assert np.abs(mid - ref[lab].mu_empty[:, None]).max() > 1e-3
    cfg = zoo_pm.wrapped_model.cfg  # flags restored
    assert cfg.use_attn_result and cfg.use_split_qkv_input


def test_both_forms_and_mixed_forms_occur(zoo_pm):
    """The zoo test above exercises sparse, complement and mixed Q/K/V forms."""
    pf = PatchedForward(zoo_pm)
    scores = _scores(zoo_pm, 1)
    n = pf.n_edges
    forms = set()
    for p in FRACTIONS[1:-1]:
        plan = pf.plan(torch.from_numpy(top_mask(scores.numpy(), int(p * n))))
        for blk in plan.attn:
            forms.add(blk.sparse[:3])  # Q, K, V (then the MLP)
    assert (True, True, True) in forms and (False, False, False) in forms
    assert any(len(set(f)) == 2 for f in forms), forms


def test_empty_circuit_is_the_corrupted_run_and_full_the_clean_run(tiny_pm):
    loader = make_loader(random_examples(6, lengths=(6,), seed=4), batch_size=3)
    n = tiny_pm.n_edges
    in_circuit = torch.zeros(4, n, dtype=torch.bool)
    in_circuit[1] = True                                 # full
    in_circuit[2, : n // 3] = True                       # a partial set ...
    in_circuit[3] = in_circuit[2]                        # ... given twice
    fast = edge_set_metrics(tiny_pm, loader, in_circuit, backend="fast")
    ref = edge_set_metrics(tiny_pm, loader, in_circuit, backend="patch-mode")
    clean, corrupt = [], []
    with torch.inference_mode():
        for b in loader:
            clean.append(METRICS["max_diff"](tiny_pm(b.clean)[tiny_pm.out_slice], b))
            corrupt.append(METRICS["max_diff"](tiny_pm(b.corrupt)[tiny_pm.out_slice], b))
    clean = torch.cat(clean).double().numpy()
    corrupt = torch.cat(corrupt).double().numpy()
    np.testing.assert_allclose(fast.mu[:, 0], corrupt, **_tolerance(corrupt))
    np.testing.assert_allclose(fast.mu[:, 1], clean, **_tolerance(clean))
    np.testing.assert_array_equal(fast.mu[:, 2], fast.mu[:, 3])
    np.testing.assert_allclose(fast.mu, ref.mu, **_tolerance(ref.mu))
    with pytest.raises(ValueError, match="bool tensor"):
        edge_set_metrics(tiny_pm, loader, in_circuit.float())


def test_stacks_split_by_the_memory_cap_and_give_the_same_numbers(tiny_pm, monkeypatch):
    loader = make_loader(random_examples(7, lengths=(6, 7), seed=8), batch_size=4)
    circuits = {k: _scores(tiny_pm, k) for k in range(3)}
    fractions = [0.05, 0.3, 0.7]
    passes: list[int] = []
    real = PatchedForward.logits

    def counting(self, tokens, patch, plans):
        passes.append(len(plans))
        return real(self, tokens, patch, plans)

    monkeypatch.setattr(PatchedForward, "logits", counting)
    one = evaluate_circuits(tiny_pm, loader, circuits, fractions, backend="fast",
                            max_stack_gib=1e-9)   # below one copy: one circuit per pass
    per_pass_one = list(passes)
    passes.clear()
    big = evaluate_circuits(tiny_pm, loader, circuits, fractions, backend="fast",
                            max_stack_gib=8.0)
    n_batches = len(list(loader))
    assert per_pass_one == [1] * (9 * n_batches)
    assert passes == [9] * n_batches
    ref = evaluate_circuits(tiny_pm, loader, circuits, fractions, backend="patch-mode")
    for k in circuits:
        np.testing.assert_allclose(one[k].mu_circuit, ref[k].mu_circuit,
                                   **_tolerance(ref[k].mu_circuit))
        np.testing.assert_allclose(big[k].mu_circuit, one[k].mu_circuit,
                                   **_tolerance(one[k].mu_circuit))
    with pytest.raises(ValueError, match="max_stack_gib"):
        evaluate_circuits(tiny_pm, loader, circuits, fractions, max_stack_gib=0.0)


def test_stack_grouping_follows_the_estimate(tiny_pm):
    pf = PatchedForward(tiny_pm)
    plans = [pf.plan(torch.rand(pf.n_edges, generator=torch.Generator().manual_seed(i)) < 0.5)
             for i in range(5)]
    one = pf.stack_bytes(1, pf.n_src, 4, 7)
    assert stacks(pf, plans, 4, 7, cap=1) == [[0], [1], [2], [3], [4]]
    assert stacks(pf, plans, 4, 7, cap=2 * one) == [[0, 1], [2, 3], [4]]
    assert stacks(pf, plans, 4, 7, cap=100 * one) == [[0, 1, 2, 3, 4]]


def test_progress_moves_per_patched_pass(tiny_pm, monkeypatch):
    updates: list[int] = []

    class Bar:
        def __init__(self, total):
            self.total, self.n = total, 0

        def update(self, k):
            updates.append(k)
            self.n += k

        def close(self):
            pass

    bars: list[Bar] = []

    def make(total, enabled):
        bars.append(Bar(total))
        return bars[-1]

    monkeypatch.setattr(patched_mod, "progress_bar", make)
    loader = make_loader(random_examples(6, lengths=(6,), seed=2), batch_size=2)  # 3 batches
    one = PatchedForward(tiny_pm).stack_bytes(1, PatchedForward(tiny_pm).n_src, 2, 6)
    evaluate_circuits(tiny_pm, loader, {"a": _scores(tiny_pm, 0)}, [0.1, 0.3, 0.5, 0.7],
                      backend="fast", progress=True, max_stack_gib=2.5 * one / 2 ** 30)
    # per batch: the clean run, the patch activations, then passes of 2 + 2 circuits
    assert updates == [1, 1, 2, 2] * 3
    assert bars[0].n == bars[0].total == 18


def test_state_restored_and_hooks_removed_on_error(tiny_pm, monkeypatch):
    loader = make_loader(random_examples(4, lengths=(6,), seed=2), batch_size=2)
    modules = list(tiny_pm.wrapped_model.modules())
    before = [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in modules]
    monkeypatch.setitem(METRICS, "max_diff", failing_after(4, METRICS["max_diff"]))
    with pytest.raises(RuntimeError, match="boom"):
        evaluate_circuits(tiny_pm, loader, {"a": _scores(tiny_pm, 0)}, [0.2, 0.5],
                          backend="fast")
    assert [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in modules] == before
    cfg = tiny_pm.wrapped_model.cfg
    assert cfg.use_attn_result and cfg.use_split_qkv_input and cfg.use_hook_mlp_in
    assert not any(w.patch_mode for w in tiny_pm.wrappers)
    assert not any("calculate_qkv_matrices" in vars(b.attn) for b in tiny_pm.wrapped_model.blocks)


def test_error_inside_a_pass_restores_the_attention(tiny_pm, monkeypatch):
    """A failure in the middle of a patched forward (after layer 0's Q/K/V projection was
    replaced) leaves TransformerLens' own projection, and the model's logits unchanged."""
    import auto_circuit_dcd.evaluation.patched as patched

    tl = tiny_pm.wrapped_model
    tokens = torch.randint(0, tl.cfg.d_vocab, (2, 6), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        ref = tl(tokens)
    loader = make_loader(random_examples(2, lengths=(6,), seed=2), batch_size=2)

    def failing(z, W_O):
        raise RuntimeError("boom")

    monkeypatch.setattr(patched, "head_outputs", failing)
    with pytest.raises(RuntimeError, match="boom"):
        evaluate_circuits(tiny_pm, loader, {"a": _scores(tiny_pm, 0)}, [0.5], backend="fast")
    assert not any("calculate_qkv_matrices" in vars(b.attn) for b in tl.blocks)
    with torch.inference_mode():
        torch.testing.assert_close(tl(tokens), ref, rtol=0, atol=0)  # same code, same numbers


def test_unsupported_model_falls_back_to_patch_mode():
    pm = combined_qkv_model()
    assert "separate_qkv" in fast_unsupported_reason(pm)
    loader = make_loader(random_examples(3, lengths=(6,), seed=1), batch_size=3)
    scores = torch.randn(pm.n_edges)
    auto = evaluate_circuits(pm, loader, {"a": scores}, [0.3], backend="auto")["a"]
    ref = evaluate_circuits(pm, loader, {"a": scores}, [0.3], backend="patch-mode")["a"]
    np.testing.assert_array_equal(auto.mu_circuit, ref.mu_circuit)  # the same code path
    with pytest.raises(ValueError, match="patch-mode"):
        evaluate_circuits(pm, loader, {"a": scores}, [0.3], backend="fast")
    with pytest.raises(ValueError, match="backend must be one of"):
        evaluate_circuits(pm, loader, {"a": scores}, [0.3], backend="nope")


def test_hand_built_edge_set_equals_patch_mode_edges(tiny_pm):
    """One named edge set, the oracle being auto-circuit's patch_mode(edges=...)."""
    from auto_circuit.types import AblationType
    from auto_circuit.utils.ablation_activations import src_ablations
    from auto_circuit.utils.graph_utils import patch_mode

    edges = sorted_edges(tiny_pm)
    names = ["Resid Start->A0.1.Q", "A0.0->A1.1.K", "A0.1->A1.0.V", "A1.0->Resid End",
             "MLP 0->A1.1.Q", "Resid Start->MLP 0", "MLP 0->Resid End"]
    chosen = [i for i, e in enumerate(edges) if e.name in names]
    assert len(chosen) == len(names)
    in_circuit = torch.zeros(1, len(edges), dtype=torch.bool)
    in_circuit[0, chosen] = True
    loader = make_loader(random_examples(5, lengths=(7,), seed=6), batch_size=5)
    fast = edge_set_metrics(tiny_pm, loader, in_circuit, backend="fast")
    outside = [e.name for i, e in enumerate(edges) if i not in chosen]
    b = next(iter(loader))
    patch = src_ablations(tiny_pm, b.corrupt, AblationType.RESAMPLE)
    try:
        with patch_mode(tiny_pm, patch, edges=outside), torch.inference_mode():
            ref = METRICS["max_diff"](tiny_pm(b.clean)[tiny_pm.out_slice], b).double().numpy()
    finally:
        for w in tiny_pm.dest_wrappers:
            torch.nn.init.constant_(w.patch_mask, 0.0)
    np.testing.assert_allclose(fast.mu[:, 0], ref, **_tolerance(ref))
    assert np.abs(ref - fast.mu_full).max() > 1e-3 and np.abs(ref - fast.mu_empty).max() > 1e-3


@pytest.mark.slow
def test_smollm2_fast_equals_patch_mode():
    pm = dcd.make_patchable(dcd.load_model("smollm2-135m"))
    assert fast_unsupported_reason(pm) is None
    data = {"prompts": SMOLLM2_IOI}
    loader = make_loader(load_examples(data, pm.tokenizer), batch_size=3)
    A = dcd.attribute(pm, loader, progress=False)
    circuits = {"eap": A.scores.mean(0), "random": _scores(pm, 0)}
    fractions = [0.01, 0.1, 0.5]
    ref = evaluate_circuits(pm, loader, circuits, fractions, backend="patch-mode")
    fast = evaluate_circuits(pm, loader, circuits, fractions, backend="fast")
    for lab in circuits:
        _assert_same(fast[lab], ref[lab])
    assert np.abs(ref["eap"].f - 1).max() > 0.01  # partial circuits, not the full model


# error of the half-precision fast backend against the float32 model's patch mode, as a
# share of max |mu|: measured 1.3e-3 (float16) and 7.9e-3 to 1.8e-2 (bfloat16) on the tiny
# models, alongside patch mode's own half-precision error (6.4e-4 to 1.6e-3, 8.6e-3 to
# 1.7e-2); the bounds leave about 3x for other processors and random draws
HALF_BOUND = {"float16": 5e-3, "bfloat16": 5e-2}


@pytest.mark.parametrize("name", ["tiny-random", "tiny-random-gqa"])
def test_fast_backend_on_grouped_and_half_precision_models(name):
    """GQA (ungrouped by make_patchable) equals patch mode in float32; float16 / bfloat16
    models stay within the measured bound of the float32 model's patch-mode numbers."""
    ref = None
    for dtype in ("float32", "float16", "bfloat16"):
        pm = dcd.make_patchable(dcd.load_model(name, dtype=dtype))
        d_vocab = pm.wrapped_model.cfg.d_vocab
        loader = make_loader(random_examples(6, lengths=(6, 7), seed=11, d_vocab=d_vocab),
                             batch_size=3)
        order = _scores(pm, 0).abs().argsort(descending=True)
        in_circuit = torch.zeros(len(FRACTIONS), pm.n_edges, dtype=torch.bool)
        for i, f in enumerate(FRACTIONS):
            in_circuit[i, order[:int(f * pm.n_edges)]] = True
        fast = edge_set_metrics(pm, loader, in_circuit, backend="fast")
        if ref is None:
            ref = edge_set_metrics(pm, loader, in_circuit, backend="patch-mode")
            np.testing.assert_allclose(fast.mu, ref.mu, **_tolerance(ref.mu))
            continue
        err = np.abs(fast.mu - ref.mu).max() / np.abs(ref.mu).max()
        assert err <= HALF_BOUND[dtype], (dtype, err)
