"""Circuits in EAP-IG's graph JSON (what MIB's circuit tools read): names, structure, round trip."""

import json

import numpy as np
import pytest
import torch

import auto_circuit_dcd as dcd
from auto_circuit_dcd.circuits.mib import (
    eap_ig_edge_name,
    from_eap_ig_graph,
    graph_config,
    package_edge_name,
    to_eap_ig_graph,
)
from auto_circuit_dcd.model.edges import edge_layout


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


def test_eap_ig_edge_names_by_hand():
    """One layer, one head: input feeds q, k, v and the MLP; the head feeds the MLP unless
    attention and MLP run in parallel; the logits read input, a0.h0 and m0."""
    from auto_circuit_dcd.circuits.mib import eap_ig_edge_names

    seq = eap_ig_edge_names({"n_layers": 1, "n_heads": 1, "parallel_attn_mlp": False})
    assert seq == ["input->a0.h0<q>", "input->a0.h0<k>", "input->a0.h0<v>", "input->m0",
                   "a0.h0->m0", "input->logits", "a0.h0->logits", "m0->logits"]
    par = eap_ig_edge_names({"n_layers": 1, "n_heads": 1, "parallel_attn_mlp": True})
    assert set(seq) - set(par) == {"a0.h0->m0"} and len(par) == 7
    assert set(eap_ig_edge_names({"n_layers": 3, "n_heads": 2})) == _eap_ig_edges(3, 2)


def test_missing_edges_score_below_every_real_edge_by_hand():
    from auto_circuit_dcd.circuits.mib import missing_edge_score

    assert missing_edge_score([-2.0, 0.5, 3.0], "signed") == -4.0
    assert missing_edge_score([0.5, 3.0], "signed") == -0.5
    assert missing_edge_score([-2.0, 0.5, 3.0], "abs") == 0.0
    tiny = np.float32(-1e-8)
    assert np.float32(missing_edge_score([tiny], "signed")) < tiny
    with pytest.raises(ValueError, match="'abs' or 'signed'"):
        missing_edge_score([1.0], "absolute")


def test_a_model_without_mlps_needs_the_ranking_its_file_is_read_with():
    pm = dcd.make_patchable(dcd.load_model("tiny-random-attn-only"))
    names, _ = edge_layout(pm)
    cfg = graph_config(pm.wrapped_model.cfg)
    scores = np.linspace(-1, 1, len(names))
    with pytest.raises(ValueError, match="lacks 17 of EAP-IG's edges"):
        to_eap_ig_graph(names, scores, np.ones(len(names), bool), cfg)
    data = to_eap_ig_graph(names, scores, np.ones(len(names), bool), cfg, ranking="signed")
    assert set(data["edges"]) == _eap_ig_edges(2, 2)
    lacking = {n: e for n, e in data["edges"].items() if "m0" in n or "m1" in n}
    # 3 + 6 into m0, m1; 6 from m0 into layer 1's q, k, v; 2 to the logits
    assert len(lacking) == 17 and len(names) + 17 == len(_eap_ig_edges(2, 2))
    assert all(e == {"score": -2.0, "in_graph": False} for e in lacking.values())
    assert data["nodes"]["m0"] == {"in_graph": False}


def _eap_ig_topn(data, n, absolute):
    """EAP-IG's edge top-n as its graph.py documents it, written here: every edge of its
    graph for the file's cfg (score 0 where the file has none), sorted by score or |score|
    (largest first), the first n."""
    cfg = data["cfg"]
    scores = dict.fromkeys(_eap_ig_edges(cfg["n_layers"], cfg["n_heads"]), 0.0)
    scores.update({e: v["score"] for e, v in data["edges"].items()})
    key = {e: abs(s) if absolute else s for e, s in scores.items()}
    order = sorted(key, key=lambda e: -key[e])
    return order[:n], [key[e] for e in order]


@pytest.fixture(scope="module")
def attn_only_run(tmp_path_factory):
    """A run of the model without MLPs under MIB's rankings (signed for CPR, |score| for
    CMD), the top-n rule, exported for MIB."""
    import contextlib
    import io

    from test_pipeline import tiny_prompts, write

    from auto_circuit_dcd.cli import main

    data = write(tmp_path_factory.mktemp("data") / "tiny.json", tiny_prompts())
    out = tmp_path_factory.mktemp("run")
    argv = ["run", "--model", "tiny-random-attn-only", "--quiet", "--max-clusters", "3",
            "--batch-size", "8", "--edge-fractions", "0.05,0.2,0.5,0.9,1",
            "--stability-resamples", "0", "--mib-parity", "--selection", "topn",
            "--dataset", str(data), "--out", str(out)]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(argv) == 0
        assert main(["export-mib", str(out)]) == 0
    return out


@pytest.mark.parametrize("ranking", ["signed", "abs"])
def test_the_top_n_of_an_exported_graph_without_mlps_is_the_runs_set(attn_only_run, ranking):
    """Oracle: EAP-IG's top-n (written above from its documentation) of each circuit's
    importances file for the ranking equals the edges the run evaluated at each size
    (``NAME.edges.RANKING``); no missing MLP edge ever enters the top-n."""
    from safetensors.torch import load_file

    out = attn_only_run
    saved = load_file(str(out / "circuits.safetensors"))
    index = json.loads((out / "mib" / "index.json").read_text())
    listing = json.loads((out / "circuits.json").read_text())
    names, fractions = listing["edge_names"], listing["edge_sets"]["fractions"]
    n_real = len(names)
    circuits = sorted({e["circuit"] for e in index["files"]})
    compared = 0
    for name in circuits:
        (entry,) = [e for e in index["files"] if e["circuit"] == name
                    and e["edge_fraction"] is None and e["ranking"] == ranking]
        data = json.loads((out / "mib" / entry["file"]).read_text())
        assert (saved[name].numpy() < 0).any()  # negative real edges: 0 would rank above
        sets = saved[f"{name}.edges.{ranking}"].numpy()
        for j, p in enumerate(fractions):
            n = int(np.floor(round(p * n_real, 9)))
            top, keys = _eap_ig_topn(data, n, absolute=ranking == "abs")
            assert not any("m0" in e or "m1" in e for e in top), (name, p)
            if n < n_real and keys[n - 1] == keys[n]:
                continue  # a tie at the cut: EAP-IG takes n, the run keeps the ties
            expected = np.zeros(n_real, dtype=bool)
            expected[[names.index(package_edge_name(e)) for e in top]] = True
            np.testing.assert_array_equal(sets[j], expected)
            compared += 1
    assert compared >= len(circuits) * (len(fractions) - 1)


def test_the_exported_size_files_say_what_they_hold(attn_only_run):
    """Each size file's flags are the run's evaluated set at that size (the first ranking,
    signed, MIB's for CPR) and its index entry and meta name the rule, ranking and counts."""
    from safetensors.torch import load_file

    from auto_circuit_dcd.circuits.mib import describe_missing

    out = attn_only_run
    saved = load_file(str(out / "circuits.safetensors"))
    index = json.loads((out / "mib" / "index.json").read_text())
    listing = json.loads((out / "circuits.json").read_text())
    names, fractions = listing["edge_names"], listing["edge_sets"]["fractions"]
    assert index["size_files_hold"] == ("the edges the run evaluated at each size: the top "
                                        "floor(p * n_edges) edges by signed score (most "
                                        "positive first), edges tied with the last one kept")
    assert index["edges_lacking"].startswith("17 edges of EAP-IG's graph (its MLPs) are not "
                                             "in this model")
    assert describe_missing(index["graph_config"], 46).startswith("none")
    sized = [e for e in index["files"] if e["edge_fraction"] is not None]
    assert len(sized) == len(fractions) * len({e["circuit"] for e in index["files"]})
    for entry in sized:
        data = json.loads((out / "mib" / entry["file"]).read_text())
        _, in_graph = from_eap_ig_graph(data, names)
        j = fractions.index(entry["edge_fraction"])
        expected = saved[f"{entry['circuit']}.edges.signed"].numpy()[j]
        np.testing.assert_array_equal(in_graph, expected)
        count = int(np.floor(round(entry["edge_fraction"] * len(names), 9)))
        assert (entry["selection"], entry["ranking"], entry["requested_edges"],
                entry["n_edges"]) == ("topn", "signed", count, int(expected.sum()))
        assert data["meta"]["holds"].startswith(f"the edges the run evaluated at this size: "
                                                f"the top {count} edges by signed score")
        lowest = min(v["score"] for e, v in data["edges"].items() if "m0" not in e
                     and "m1" not in e)
        assert all(v["score"] < lowest and not v["in_graph"]
                   for e, v in data["edges"].items() if "m0" in e or "m1" in e)


def test_every_selection_rule_is_described_in_the_export():
    """export-mib's index says in words what each size file holds: every rule a run can
    select with (SELECTIONS) has its words, naming the asked count."""
    from auto_circuit_dcd.circuits.circuit import SELECTIONS
    from auto_circuit_dcd.circuits.mib import describe_selection

    for rule in SELECTIONS:
        for ranking in ("abs", "signed"):
            assert "floor(p * n_edges)" in describe_selection(rule, ranking), (rule, ranking)
