"""Circuits in EAP-IG's graph JSON (what MIB's circuit tools read): names, structure, round trip."""

import json

import numpy as np
import pytest
import torch

import auto_circuit_dcd as dcd
from auto_circuit_dcd.model.edges import edge_layout
from auto_circuit_dcd.circuits.mib import (eap_ig_edge_name, from_eap_ig_graph, graph_config,
                                  package_edge_name, to_eap_ig_graph)


def _eap_ig_edges(n_layers: int, n_heads: int) -> set:
    """EAP-IG's edge set of a sequential model, written from its documented construction:
    every earlier node feeds each head's q, k and v, the heads feed their own layer's MLP,
    everything feeds the logits."""
    upstream, edges = ["input"], set()
    for layer in range(n_layers):
        heads = [f"a{layer}.h{h}" for h in range(n_heads)]
        edges |= {f"{u}->{h}<{x}>" for u in upstream for h in heads for x in "qkv"}
        upstream += heads
        edges |= {f"{u}->m{layer}" for u in upstream}
        upstream.append(f"m{layer}")
    return edges | {f"{u}->logits" for u in upstream}


def test_names_by_hand():
    assert eap_ig_edge_name("Resid Start->A0.1.K") == "input->a0.h1<k>"
    assert eap_ig_edge_name("A0.1->MLP 1") == "a0.h1->m1"
    assert eap_ig_edge_name("MLP 11->Resid End") == "m11->logits"
    assert package_edge_name("a3.h10->a7.h2<v>") == "A3.10->A7.2.V"
    assert package_edge_name("input->logits") == "Resid Start->Resid End"
    with pytest.raises(ValueError, match="EAP-IG"):
        eap_ig_edge_name("Resid Start->blocks.0.hook_attn_in")


def test_the_graphs_have_the_same_edges(tiny_pm):
    names, _ = edge_layout(tiny_pm)
    cfg = tiny_pm.wrapped_model.cfg
    assert {eap_ig_edge_name(n) for n in names} == _eap_ig_edges(cfg.n_layers, cfg.n_heads)
    assert [package_edge_name(eap_ig_edge_name(n)) for n in names] == names


def test_a_circuit_round_trips_through_the_json(tiny_pm, tmp_path):
    names, _ = edge_layout(tiny_pm)
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(len(names), generator=g).numpy()
    keep = np.zeros(len(names), dtype=bool)
    keep[[names.index("Resid Start->A0.1.Q"), names.index("A0.1->Resid End")]] = True
    data = to_eap_ig_graph(names, scores, keep, graph_config(tiny_pm.wrapped_model.cfg))
    path = tmp_path / "graph.json"
    path.write_text(json.dumps(data))
    back_scores, back_keep = from_eap_ig_graph(json.loads(path.read_text()), names)
    np.testing.assert_allclose(back_scores, scores, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(back_keep, keep)
    # the only path: input -> a0.h1 -> logits; m0, m1, a1.* and a0.h0 are out
    assert {n for n, v in data["nodes"].items() if v["in_graph"]} == {"input", "a0.h1", "logits"}
    assert data["cfg"] == {"n_layers": 2, "n_heads": 2, "parallel_attn_mlp": False, "d_model": 16}


def test_attention_only_models_and_foreign_edges():
    pm = dcd.make_patchable(dcd.load_model("tiny-random-attn-only"))
    names, _ = edge_layout(pm)
    eap = {eap_ig_edge_name(n) for n in names}
    assert eap < _eap_ig_edges(2, 2) and not any("m0" in e or "m1" in e for e in eap)
    data = {"edges": {"m0->logits": {"score": 1.0, "in_graph": False},
                      "input->logits": {"score": 2.0, "in_graph": True}}}
    scores, keep = from_eap_ig_graph(data, names)
    assert keep.sum() == 1 and scores[names.index("Resid Start->Resid End")] == 2.0
    data["edges"]["m0->logits"]["in_graph"] = True
    with pytest.raises(ValueError, match="not in this model's graph"):
        from_eap_ig_graph(data, names)
