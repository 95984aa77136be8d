"""Exactness on a real pretrained model: SmolLM2-135M rows vs auto-circuit's own EAP."""

import pytest
import torch
from auto_circuit.prune_algos.mask_gradient import mask_gradient_prune_scores
from conftest import SMOLLM2_IOI

import auto_circuit_dcd as dcd
from auto_circuit_dcd.data import load_examples, make_loader

pytestmark = pytest.mark.slow

IOI = {"prompts": SMOLLM2_IOI[:2]}


@pytest.fixture(scope="module")
def smol():
    pm = dcd.make_patchable(dcd.load_model("smollm2-135m"))
    return pm, load_examples(IOI, pm.tokenizer)


@pytest.mark.parametrize("backend", ["fast", "hooks"])
def test_smollm2_rows_equal_auto_circuit_per_example(smol, backend):
    pm, examples = smol
    assert pm.n_edges == 123_211
    A = dcd.attribute(pm, make_loader(examples, batch_size=2), metric="avg_diff",
                      backend=backend, progress=False)
    assert A.meta["backend"] == backend
    for ex in examples:
        ps = mask_gradient_prune_scores(pm, make_loader([ex], 1), None, grad_function="logit",
                                        answer_function="avg_diff", mask_val=0.0)
        ref = A.layout.from_prune_scores(ps).double()
        row = A.scores[A.example_ids.index(ex.id)].double()
        cos = torch.nn.functional.cosine_similarity(row, ref, dim=0)
        assert cos > 0.9999
        rel = float((row - ref).abs().max() / ref.abs().max())
        assert rel < 1e-3
        # the ranking that circuits are built from agrees at the top
        top = set(ref.abs().topk(100).indices.tolist())
        assert len(top & set(row.abs().topk(100).indices.tolist())) >= 98
