"""Half-precision models in the fast backend: rows against the float32 model's rows.

The oracle is the same model in float32. A float16 / bfloat16 model's own forward and
backward round (its logits and metric differ from float32's: the floor, measured here
too); the backend adds float32 accumulation only, so the rows' error stays within a small
multiple of that floor. Bounds are the measured maxima (docs/scale.md, "Half precision")
with a 2x margin.
"""

import copy

import pytest
import torch
from conftest import random_examples, randomise_weights, tl_config
from transformer_lens import HookedTransformer

import auto_circuit_dcd as dcd
from auto_circuit_dcd.data import make_loader
from auto_circuit_dcd.model.forward import accumulation_dtype, unsupported_reason

MODELS = {
    "layernorm-mlp": dict(),
    "rmsnorm-rotary-gated-gqa": dict(normalization_type="RMS",
                                     positional_embedding_type="rotary", act_fn="silu",
                                     gated_mlp=True, n_key_value_heads=2),
}
# max over rows of |row_half - row_fp32| / |row_fp32|, measured on these models, 16 prompts,
# EAP and EAP-IG: float16 3.1e-3 / 4.0e-3, bfloat16 3.7e-2 / 2.9e-2 (the models' own
# logits are off by 1.3e-3 / 2.4e-3 and 1.3e-2 / 1.8e-2 relative).
ROW_BOUND = {torch.float16: 1e-2, torch.bfloat16: 8e-2}
# rows' error / the model's own logit error: measured at most 2.9
FLOOR_FACTOR = 6.0


def _examples():
    """Random prompt pairs whose rows are not zero (an answer among the wrong answers
    makes mu = 0 at its max, with no gradient)."""
    examples = random_examples(16, lengths=(7,), seed=5)
    return [e for e in examples if not torch.isin(e.answers, e.wrong_answers).any()]


@pytest.fixture(scope="module", params=sorted(MODELS))
def base(request):
    return randomise_weights(HookedTransformer(tl_config(**MODELS[request.param])))


def _relative_row_error(half: torch.Tensor, full: torch.Tensor) -> float:
    return float(((half - full).norm(dim=1) / full.norm(dim=1)).max())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("method", ["eap", "eap-ig"])
def test_half_precision_rows_are_within_the_measured_bound(base, dtype, method):
    examples = _examples()
    pm32 = dcd.make_patchable(copy.deepcopy(base).eval())
    pmh = dcd.make_patchable(copy.deepcopy(base).eval().to(dtype, print_details=False))
    assert unsupported_reason(pmh) is None
    A32 = dcd.attribute(pm32, make_loader(examples, 8), method=method, ig_steps=3,
                        progress=False)
    Ah = dcd.attribute(pmh, make_loader(examples, 8), method=method, ig_steps=3,
                       progress=False)
    assert Ah.meta["backend"] == "fast" and Ah.scores.dtype == torch.float32
    assert accumulation_dtype(dtype) == torch.float32
    err = _relative_row_error(Ah.scores, A32.scores)

    tokens = torch.stack([e.clean for e in examples])
    with torch.no_grad():
        logits32 = pm32.wrapped_model(tokens)[:, -1]
        logitsh = pmh.wrapped_model(tokens)[:, -1].float()
    floor = float(((logitsh - logits32).norm(dim=1) / logits32.norm(dim=1)).max())
    assert floor > 0  # the model really runs in half precision
    assert err <= ROW_BOUND[dtype], (err, floor)
    assert err <= FLOOR_FACTOR * floor, (err, floor)


def test_weights_and_config_that_disagree_are_refused_with_the_fix():
    model = randomise_weights(HookedTransformer(tl_config()))
    torch.nn.Module.to(model, torch.bfloat16)  # casts the weights, not cfg.dtype
    pm = dcd.make_patchable(model)
    assert "model.to(dtype)" in unsupported_reason(pm)
