"""Grouped-query attention: made multi-head in one place, then exact through the whole method.

Oracles: the grouped model itself (a copy kept before ungrouping: its logits, its clean
and corrupted metric), auto-circuit's own mask gradient on the ungrouped model, and the
definition of faithfulness at 0% and 100% of edges.
"""

import copy
import json
import logging

import numpy as np
import pytest
import torch
from auto_circuit.prune_algos.mask_gradient import mask_gradient_prune_scores
from auto_circuit.utils.graph_utils import patchable_model
from conftest import random_examples, randomise_weights, tl_config
from transformer_lens import HookedTransformer

import auto_circuit_dcd as dcd
from auto_circuit_dcd.data import make_loader
from auto_circuit_dcd.model.forward import unsupported_reason
from auto_circuit_dcd.model.grouped_query import expand_grouped_kv, ungroup_kv
from auto_circuit_dcd.model.load import enable_patching_flags
from auto_circuit_dcd.model.task_metric import max_diff

# n_heads=4 over n_key_value_heads=2 in every config; non-zero K/V biases everywhere
GQA_CONFIGS = {
    "layernorm-standard-mlp": dict(),
    "rmsnorm-rotary-gated": dict(normalization_type="RMS", positional_embedding_type="rotary",
                                 act_fn="silu", gated_mlp=True),
    "layernorm-rotary-attn-only": dict(positional_embedding_type="rotary", attn_only=True),
    "rmsnorm-standard-attn-only": dict(normalization_type="RMS", attn_only=True),
}
# The multi-head form multiplies the same weights in another summation order (one
# product per query head instead of one per K/V head, then repeated): float32 rounding
# of a few ulps, 8e-7 measured on logits of size ~1; 1e-5 leaves room for other CPUs.
LOGIT_ATOL = 1e-5


def _gqa(name: str) -> HookedTransformer:
    model = HookedTransformer(tl_config(n_key_value_heads=2, **GQA_CONFIGS[name]))
    return randomise_weights(model).eval().requires_grad_(False)


def _batch_of(examples):
    return next(iter(make_loader(examples, len(examples))))


@pytest.fixture(scope="module", params=sorted(GQA_CONFIGS))
def grouped_and_patchable(request):
    grouped = _gqa(request.param)
    model = copy.deepcopy(grouped)
    return grouped, dcd.make_patchable(model), model


def test_expand_grouped_kv_repeats_each_kv_head_over_its_query_heads():
    from transformer_lens import HookedTransformerConfig

    common = dict(n_layers=2, d_model=24, n_heads=6, d_head=4, d_mlp=32, d_vocab=40,
                  n_ctx=16, act_fn="silu", normalization_type="RMS",
                  positional_embedding_type="rotary", rotary_dim=4, gated_mlp=True,
                  device="cpu")
    gqa = HookedTransformer(HookedTransformerConfig(**common, n_key_value_heads=2, seed=1))
    for name, p in gqa.named_parameters():  # non-zero biases, so their order matters too
        if "._b_" in name:
            p.data.normal_()
    sd = gqa.state_dict()
    expanded = expand_grouped_kv(sd, n_heads=6, n_key_value_heads=2)
    assert "blocks.0.attn._W_K" not in expanded
    assert expanded["blocks.0.attn.W_K"].shape == (6, 24, 4)
    # query head h uses key/value head h // 3
    assert torch.equal(expanded["blocks.1.attn.W_V"][4], sd["blocks.1.attn._W_V"][1])
    assert torch.equal(expanded["blocks.1.attn.b_K"][2], sd["blocks.1.attn._b_K"][0])
    assert "blocks.0.attn._W_K" in sd  # input unchanged
    mha = HookedTransformer(HookedTransformerConfig(**common, seed=2))
    mha.load_state_dict(expanded, strict=True)
    tokens = torch.randint(0, 40, (2, 9))
    torch.testing.assert_close(mha(tokens), gqa(tokens), rtol=0, atol=LOGIT_ATOL)
    with pytest.raises(ValueError, match="multiple"):
        expand_grouped_kv(sd, n_heads=6, n_key_value_heads=4)


def test_make_patchable_ungroups_in_place_with_identical_logits(grouped_and_patchable,
                                                                 caplog):
    grouped, pm, model = grouped_and_patchable
    assert pm.wrapped_model is model  # the caller's object, changed in place
    assert model.cfg.n_key_value_heads is None
    assert all(type(b.attn).__name__ == "Attention" for b in model.blocks)
    assert tuple(model.blocks[0].attn.W_K.shape) == (4, 16, 4)
    tokens = torch.randint(0, 50, (3, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(pm(tokens)[pm.out_slice], grouped(tokens)[:, -1], rtol=0,
                                   atol=LOGIT_ATOL)
    assert unsupported_reason(pm) is None  # the fast backend takes it

    fresh = _gqa("layernorm-standard-mlp")
    with caplog.at_level(logging.INFO, logger="auto_circuit_dcd"):
        dcd.make_patchable(fresh)
    assert "grouped-query attention: repeated the 2 key/value heads over the 4" in caplog.text
    assert ungroup_kv(fresh) is False  # nothing left to do


@pytest.mark.parametrize("backend", ["fast", "hooks"])
def test_rows_equal_auto_circuit_on_the_ungrouped_model(grouped_and_patchable, backend):
    _, pm, _ = grouped_and_patchable
    examples = random_examples(3, lengths=(7,), seed=11)
    A = dcd.attribute(pm, make_loader(examples, 3), metric="avg_diff", progress=False,
                      backend=backend)
    assert A.meta["backend"] == backend
    for ex in examples:
        ref = A.layout.from_prune_scores(mask_gradient_prune_scores(
            pm, make_loader([ex], 1), None, grad_function="logit",
            answer_function="avg_diff", mask_val=0.0))
        torch.testing.assert_close(A.scores[A.example_ids.index(ex.id)], ref,
                                   rtol=1e-4, atol=1e-6)


def test_grouped_discovery_and_faithfulness_on_a_grouped_query_model():
    grouped = _gqa("rmsnorm-rotary-gated")
    pm = dcd.make_patchable(copy.deepcopy(grouped))
    examples = random_examples(12, lengths=(7,), seed=12, groups=["a", "b"])
    loader = make_loader(examples, 4)
    A = dcd.attribute(pm, loader, progress=False)
    assert A.meta["backend"] == "fast"
    gd = dcd.GroupedDiscovery(n_clusters=2, random_state=0).fit(A)
    assert gd.n_clusters_ == 2
    circuits = {"single": A.prune_scores(model=pm),
                **{c: A.prune_scores(np.flatnonzero(gd.labels_ == c), model=pm)
                   for c in range(2)}}
    res = dcd.evaluate_circuits(pm, loader, circuits, [0.0, 0.2, 1.0])
    batch = _batch_of([examples[i] for i in res["single"].example_ids])
    with torch.no_grad():  # the grouped model is the oracle for the full and empty runs
        mu_clean = max_diff(grouped(batch.clean)[:, -1], batch).double().numpy()
        mu_corrupt = max_diff(grouped(batch.corrupt)[:, -1], batch).double().numpy()
    for r in res.values():
        # float32 forwards of the two forms differ by rounding (see LOGIT_ATOL)
        np.testing.assert_allclose(r.mu_full, mu_clean, rtol=0, atol=1e-4)
        np.testing.assert_allclose(r.mu_empty, mu_corrupt, rtol=0, atol=1e-4)
        assert r.f[-1] == pytest.approx(1.0, abs=1e-9)  # every edge kept: the model
        assert r.f[0] == pytest.approx(0.0, abs=1e-9)   # none kept: the corrupted run


def test_main_job_runs_on_a_grouped_query_model(tmp_path, capsys):
    from auto_circuit_dcd.cli import main

    g = torch.Generator().manual_seed(0)
    prompts = []
    for i in range(20):
        clean = [1 + i % 2] + torch.randint(3, 50, (5,), generator=g).tolist()
        corrupt = list(clean)
        corrupt[3] = (corrupt[3] + 7) % 47 + 3
        prompts.append({"clean": clean, "corrupt": corrupt, "answers": [int(clean[2])],
                        "wrong_answers": [int(clean[4])], "group": f"family{i % 2}"})
    data = tmp_path / "tiny.json"
    data.write_text(json.dumps({"prompts": prompts}))
    out = tmp_path / "run"
    code = main(["run", "--model", "tiny-random-gqa", "--dataset", str(data), "--out", str(out),
                 "--quiet", "--max-clusters", "3", "--batch-size", "4",
                 "--edge-fractions", "0.05,1", "--device", "cpu", "--dtype", "float32"])
    assert code == 0
    assert "grouped-query attention: repeated the 2 key/value heads" in capsys.readouterr().err
    rep = json.loads((out / "report.json").read_text())
    reference = dcd.make_patchable(dcd.load_model("tiny-random-gqa"))
    assert rep["n_edges"] == reference.n_edges == 110  # per query head: 4 heads x 2 layers
    assert rep["single"]["faithfulness"][-1] == pytest.approx(1.0)
    meta = json.loads((out / "attribution_train" / "attribution.json").read_text())
    assert meta["meta"]["backend"] == "fast"


def test_a_grouped_model_wrapped_by_auto_circuit_itself_is_refused_with_the_fix():
    model = enable_patching_flags(_gqa("layernorm-standard-mlp"))
    pm = patchable_model(model, factorized=True, slice_output="last_seq", separate_qkv=True,
                         device="cpu")
    assert "make_patchable" in unsupported_reason(pm)
    loader = make_loader(random_examples(2, lengths=(6,)), 2)
    for backend in ("auto", "fast", "hooks"):  # never a shape error
        with pytest.raises(ValueError, match="grouped-query attention.*make_patchable"):
            dcd.attribute(pm, loader, progress=False, backend=backend)
    with pytest.raises(ValueError, match="already wrapped"):
        ungroup_kv(model)
