"""The flag-free attribution path against the exact hooks path, auto-circuit and autograd."""

import pytest
import torch
from conftest import SMOLLM2_IOI, random_examples
from conftest import randomise_weights as _randomise
from conftest import tl_config as _config
from transformer_lens import HookedTransformer

import auto_circuit_dcd as dcd
from auto_circuit_dcd.attribution.fast import fast_attribute_batch
from auto_circuit_dcd.attribution.hooks import hooks_attribute_batch
from auto_circuit_dcd.data import make_loader
from auto_circuit_dcd.model.forward import (
    WrapperGraph,
    frozen,
    norm_vjp,
    plain_forward,
    supports_fast,
    unsupported_reason,
)
from auto_circuit_dcd.model.task_metric import avg_diff, max_diff

IG_ALPHAS = [1.0, 0.6, 0.2]  # EAP-IG with 3 steps, alpha = 1 first as in attribute()


def _grouped_query_expanded() -> HookedTransformer:
    from auto_circuit_dcd.model.grouped_query import expand_grouped_kv

    over = dict(normalization_type="RMS", positional_embedding_type="rotary",
                act_fn="silu", gated_mlp=True)
    gqa = _randomise(HookedTransformer(_config(n_key_value_heads=2, **over)))
    mha = HookedTransformer(_config(**over))
    mha.load_state_dict(expand_grouped_kv(gqa.state_dict(), 4, 2))
    tokens = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(3))
    assert torch.allclose(gqa(tokens), mha(tokens), atol=1e-5)  # same function
    return mha


def _folded(norm: str) -> HookedTransformer:
    model = _randomise(HookedTransformer(_config(normalization_type=norm)))
    model.process_weights_(fold_ln=True, center_writing_weights=False, center_unembed=False)
    assert model.cfg.normalization_type == norm + "Pre"
    return model


MODELS = {
    "layernorm": lambda: _randomise(HookedTransformer(_config())),
    "layernorm-attn-only": lambda: _randomise(HookedTransformer(_config(attn_only=True))),
    "rmsnorm-rotary-gated": lambda: _randomise(HookedTransformer(_config(
        normalization_type="RMS", positional_embedding_type="rotary", act_fn="silu",
        gated_mlp=True))),
    "no-norm": lambda: _randomise(HookedTransformer(_config(normalization_type=None))),
    "layernorm-folded": lambda: _folded("LN"),
    "rmsnorm-folded": lambda: _folded("RMS"),
    "grouped-query-expanded": _grouped_query_expanded,
    # ungrouped by make_patchable itself (LayerNorm, standard positions, MLPs)
    "grouped-query-layernorm": lambda: _randomise(HookedTransformer(_config(
        n_key_value_heads=2))),
    "parallel-attn-mlp": lambda: _randomise(HookedTransformer(_config(parallel_attn_mlp=True))),
}


@pytest.fixture(scope="module", params=sorted(MODELS))
def patchable(request):
    model = MODELS[request.param]()
    model.eval()
    model.requires_grad_(False)
    return dcd.make_patchable(model)


def _both(pm, batch, alphas, metric=max_diff):
    graph = WrapperGraph(pm)
    with frozen(pm):
        exact = hooks_attribute_batch(pm, graph, batch, metric, alphas)
        fast = fast_attribute_batch(pm, graph, batch, metric, alphas)
    return exact, fast


def _assert_same(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5 * float(a.abs().max()))


@pytest.mark.parametrize("alphas", [[1.0], IG_ALPHAS], ids=["eap", "eap-ig"])
def test_fast_rows_equal_the_exact_path(patchable, alphas):
    assert supports_fast(patchable), unsupported_reason(patchable)
    batch = next(iter(make_loader(random_examples(3, lengths=(7,), seed=5), 3)))
    (rows, mu), (fast_rows, fast_mu) = _both(patchable, batch, alphas)
    assert fast_rows.shape == rows.shape == (3, patchable.n_edges)
    assert fast_rows.dtype == torch.float32
    assert rows.abs().max() > 1e-3  # a real signal, not all zeros
    _assert_same(rows, fast_rows)
    torch.testing.assert_close(fast_mu, mu, rtol=1e-5, atol=1e-5)
    cfg = patchable.wrapped_model.cfg  # flags restored after the batch
    assert cfg.use_attn_result and cfg.use_split_qkv_input
    assert cfg.use_hook_mlp_in == (not cfg.attn_only)


def test_fast_rows_equal_auto_circuit_on_one_example():
    """A direct oracle: auto-circuit's own mask gradient (avg_diff, one example)."""
    from auto_circuit.prune_algos.mask_gradient import mask_gradient_prune_scores

    pm = dcd.make_patchable(_grouped_query_expanded().eval().requires_grad_(False))
    ex = random_examples(1, lengths=(8,), seed=7)[0]
    loader = make_loader([ex], 1)
    ref = WrapperGraph(pm).layout.from_prune_scores(mask_gradient_prune_scores(
        pm, loader, None, grad_function="logit", answer_function="avg_diff", mask_val=0.0))
    graph = WrapperGraph(pm)
    with frozen(pm):
        rows, _ = fast_attribute_batch(pm, graph, next(iter(loader)),
                                       avg_diff, [1.0])
    _assert_same(ref, rows[0])


@pytest.mark.parametrize("norm", ["LN", "RMS", "LNPre", "RMSPre", None])
def test_norm_vjp_equals_autograd_through_transformer_lens_norms(norm):
    model = _randomise(HookedTransformer(_config(normalization_type=norm, attn_only=True,
                                                 dtype=torch.float64)))
    ln = model.blocks[0].ln1
    kind = {"LN": "ln", "RMS": "rms", "LNPre": "ln_pre", "RMSPre": "rms_pre", None: "none"}
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    v = torch.randn(2, 5, 16, dtype=torch.float64)
    xr = x.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(ln(xr), xr, v)
    torch.testing.assert_close(norm_vjp(kind[norm], ln, x, v), ref, rtol=1e-10, atol=1e-12)


def test_flags_are_restored_when_the_metric_fails(tiny_pm):
    def broken(logits, batch):
        raise RuntimeError("metric failed")

    graph = WrapperGraph(tiny_pm)
    batch = next(iter(make_loader(random_examples(2, lengths=(6,)), 2)))
    with pytest.raises(RuntimeError, match="metric failed"):
        fast_attribute_batch(tiny_pm, graph, batch, broken, [1.0])
    cfg = tiny_pm.wrapped_model.cfg
    assert cfg.use_attn_result and cfg.use_split_qkv_input and cfg.use_hook_mlp_in
    with pytest.raises(KeyError):
        with plain_forward(tiny_pm.wrapped_model):
            assert not cfg.use_attn_result and not cfg.use_split_qkv_input
            raise KeyError("inside")
    assert cfg.use_attn_result and cfg.use_split_qkv_input and cfg.use_hook_mlp_in


def combined_qkv_model():
    """An attention-only model wrapped by auto-circuit with ``separate_qkv=False`` (one
    attention input per layer), which neither fast path takes."""
    from auto_circuit.utils.graph_utils import patchable_model

    model = _randomise(HookedTransformer(_config(attn_only=True)))
    model.set_use_attn_result(True)
    model.set_use_attn_in(True)
    return patchable_model(model, factorized=True, slice_output="last_seq",
                           separate_qkv=False, device="cpu")


def test_unsupported_models_are_refused_with_a_reason():
    pm = combined_qkv_model()
    assert not supports_fast(pm)
    assert "separate_qkv" in unsupported_reason(pm)
    graph = WrapperGraph(pm)
    batch = next(iter(make_loader(random_examples(1, lengths=(6,)), 1)))
    with pytest.raises(ValueError, match="hooks backend"):
        fast_attribute_batch(pm, graph, batch, max_diff, [1.0])
    assert "HookedTransformer" in unsupported_reason(torch.nn.Linear(2, 2))


@pytest.mark.slow
@pytest.mark.parametrize("alphas", [[1.0], [1.0, 0.8, 0.6, 0.4, 0.2]], ids=["eap", "eap-ig"])
def test_smollm2_fast_rows_equal_the_exact_path(alphas):
    from auto_circuit_dcd.data import load_examples

    pm = dcd.make_patchable(dcd.load_model("smollm2-135m"))
    assert supports_fast(pm), unsupported_reason(pm)
    data = {"prompts": SMOLLM2_IOI[:2]}
    loader = make_loader(load_examples(data, pm.tokenizer), batch_size=2)
    for batch in loader:
        (rows, mu), (fast_rows, fast_mu) = _both(pm, batch, alphas)
        _assert_same(rows, fast_rows)
        torch.testing.assert_close(fast_mu, mu, rtol=1e-4, atol=1e-4)
