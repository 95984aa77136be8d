"""Circuit and its selection rules against hand-computed graphs, auto-circuit's own edge
lookup and threshold rule, and an independent path search on a real tiny model's graph."""

import numpy as np
import pytest
import torch
from conftest import reachable

import auto_circuit_dcd as dcd
from auto_circuit_dcd.circuits.circuit import Circuit
from auto_circuit_dcd.circuits.graph import EdgeGraph, edge_graph
from auto_circuit_dcd.circuits.selection import mass_mask, top_mask
from auto_circuit_dcd.model.edges import EdgeLayout, edge_layout, sorted_edges

# A hand-built graph shaped like auto-circuit's: input, one head (Q and K inputs), one MLP,
# the logits. Edge j below is column j.
#   0 Resid Start->A0.0.Q   1 Resid Start->A0.0.K   2 Resid Start->MLP 0   3 A0.0->MLP 0
#   4 Resid Start->Resid End   5 A0.0->Resid End   6 MLP 0->Resid End
HAND_NAMES = ["Resid Start->A0.0.Q", "Resid Start->A0.0.K", "Resid Start->MLP 0",
              "A0.0->MLP 0", "Resid Start->Resid End", "A0.0->Resid End", "MLP 0->Resid End"]
HAND_LAYOUT = EdgeLayout((("blocks.0.hook_q_input", (1, 1), 0, 1),
                          ("blocks.0.hook_k_input", (1, 1), 1, 2),
                          ("blocks.0.hook_mlp_in", (2,), 2, 4),
                          ("blocks.0.hook_resid_post", (3,), 4, 7)))
# by |s|: 5, 0, 1, 3, 6, 2, 4; signed: 0, 1, 3, 6, 2, 4, 5
HAND_SCORES = [0.9, 0.85, 0.2, 0.8, 0.05, -0.95, 0.7]


@pytest.fixture()
def hand():
    return Circuit(torch.tensor(HAND_SCORES), HAND_NAMES, HAND_LAYOUT)


def kept(c):
    return torch.nonzero(c.mask).flatten().tolist()


def test_hand_graph_nodes_inputs_outputs(hand):
    g = hand.graph
    assert g.node_names == ("Resid Start", "A0.0", "MLP 0", "Resid End")
    assert g.edge_src.tolist() == [0, 0, 0, 1, 0, 1, 2]
    assert g.edge_dest.tolist() == [1, 1, 2, 2, 3, 3, 3]  # Q and K inputs are the head A0.0
    assert g.inputs == (0,) and g.outputs == (3,)


@pytest.mark.parametrize("count,ranking,top,connected", [
    (1, "abs", [5], []),                # A0.0 -> logits, but nothing enters A0.0
    (2, "abs", [0, 5], [0, 5]),         # input -Q-> A0.0 -> logits
    (3, "abs", [0, 1, 5], [0, 1, 5]),   # the K input is a second path into the same head
    (3, "signed", [0, 1, 3], []),       # nothing reaches the logits
    (4, "signed", [0, 1, 3, 6], [0, 1, 3, 6]),
])
def test_top_then_pruned_by_hand(hand, count, ranking, top, connected):
    assert kept(hand.top(count, ranking)) == top
    assert kept(hand.top(count, ranking).pruned()) == connected


def test_pruned_reaches_the_fixed_point(hand):
    # {0, 3}: input -> A0.0 -> MLP 0, and MLP 0 leads nowhere. Removing the dangling edge 3
    # leaves A0.0 without an outgoing edge, which must remove edge 0 as well (EAP-IG's
    # prune before its PR #17 stopped after the first removal and kept edge 0).
    c = hand.with_mask(np.isin(np.arange(7), [0, 3]))
    assert kept(c.pruned()) == []
    # a dangling edge (into A0.0, which leads nowhere) next to a complete path: it alone goes
    assert kept(hand.with_mask(np.isin(np.arange(7), [1, 2, 6])).pruned()) == [2, 6]
    # two complete paths through MLP 0: nothing goes
    assert kept(hand.with_mask(np.isin(np.arange(7), [0, 1, 2, 3, 6])).pruned()) == [0, 1, 2, 3, 6]
    assert kept(hand.pruned()) == list(range(7))  # the full graph is all paths


@pytest.mark.parametrize("count,ranking,prune,expected", [
    # abs: logits' parents 5 (.95), 6 (.7), 4 (.05): take 5, open A0.0 -> 0 (.9), 1 (.85)
    (1, "abs", True, []),
    (2, "abs", True, [0, 5]),
    (3, "abs", True, [0, 1, 5]),
    # signed: take 6 (.7), open MLP 0 -> 3 (.8), 2 (.2); take 3, open A0.0 -> 0, 1
    (2, "signed", False, [3, 6]),
    (2, "signed", True, []),            # A0.0 has no edge in yet
    (3, "signed", True, [0, 3, 6]),
    (5, "signed", True, [0, 1, 2, 3, 6]),
    (7, "abs", True, list(range(7))),
    (99, "abs", True, list(range(7))),  # more than there are: all
    (0, "abs", True, []),
])
def test_greedy_by_hand(hand, count, ranking, prune, expected):
    assert kept(hand.greedy(count, ranking, prune=prune)) == expected


def test_greedy_differs_from_top_where_top_is_disconnected(hand):
    assert hand.top(3, "signed").pruned().size == 0
    assert kept(hand.greedy(3, "signed")) == [0, 3, 6]


def test_mass_by_hand_and_within_a_selection(hand):
    # total |s| 4.45; half is 2.225: .95 + .9 = 1.85 < 2.225, + .85 reaches it
    assert kept(hand.mass(0.5)) == [0, 1, 5]
    assert kept(hand.mass(1.0)) == list(range(7))
    # within {0, 1, 3} (total 2.55, half 1.275): .9 + .85
    assert kept(hand.top(3, "signed").mass(0.5)) == [0, 1]
    with pytest.raises(ValueError, match="gamma"):
        hand.mass(0.0)


def test_top_ties_follow_auto_circuit_and_selection_is_chained(hand):
    c = Circuit(torch.tensor([1.0, -1.0, 1.0, 0.5, 0.5, 0.2, 0.0]), HAND_NAMES, HAND_LAYOUT)
    assert kept(c.top(2)) == [0, 1, 2]      # three tied at the 2nd largest |s|: all kept
    assert kept(c.top(2, "signed")) == [0, 2]
    assert kept(c.top(4)) == [0, 1, 2, 3, 4]
    assert kept(c.top(0)) == [] and kept(c.top(100)) == list(range(7))
    assert kept(c.top(6)) == [0, 1, 2, 3, 4, 5] and kept(c.top(7)) == list(range(7))
    sub = c.top(4)
    assert kept(sub.top(2)) == [0, 1, 2]     # ranks only the circuit's own edges
    assert kept(sub.top(100)) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="ranking"):
        c.top(2, "median")
    with pytest.raises(ValueError, match="non-negative"):
        c.top(-1)


def test_circuit_rejects_bad_input():
    with pytest.raises(ValueError, match="inf"):
        Circuit(torch.tensor([float("inf")] + [0.0] * 6), HAND_NAMES, HAND_LAYOUT)
    with pytest.raises(ValueError, match="edge names"):
        Circuit(torch.zeros(7), HAND_NAMES[:6], HAND_LAYOUT)
    with pytest.raises(ValueError, match="mask"):
        Circuit(torch.zeros(7), HAND_NAMES, HAND_LAYOUT, mask=torch.ones(7))
    with pytest.raises(ValueError, match="belongs to no source head"):
        EdgeGraph.from_names(["Resid Start->A0.3.Q"], ["blocks.0.hook_q_input"])


# ----------------------------------------------------------------------------- real model
def random_prune_scores(pm, seed, decimals=None):
    g = torch.Generator().manual_seed(seed)
    ps = pm.new_prune_scores()
    for k in ps:
        ps[k] = torch.randn(ps[k].shape, generator=g)
        if decimals is not None:  # rounding makes ties
            ps[k] = ps[k].round(decimals=decimals)
    return ps


def test_graph_from_names_matches_the_one_from_auto_circuits_edges(tiny_pm):
    names, layout = edge_layout(tiny_pm)
    g = edge_graph(tiny_pm)
    assert EdgeGraph.from_layout(names, layout).same_as(g)
    # oracle: auto-circuit's own node objects. A source and a destination are one node when
    # they share (layer, head_idx) (a head's Q/K/V inputs and its output; an MLP's in/out)
    edges = sorted_edges(tiny_pm)
    key = {(e.src.layer, e.src.head_idx): e.src.name for e in edges}
    for j, e in enumerate(edges):
        assert g.node_names[g.edge_src[j]] == e.src.name
        dest = key.get((e.dest.layer, e.dest.head_idx), e.dest.name)
        assert g.node_names[g.edge_dest[j]] == dest
    assert [g.node_names[i] for i in g.inputs] == ["Resid Start"]
    assert [g.node_names[i] for i in g.outputs] == ["Resid End"]


def on_path_oracle(pm, mask):
    """Edges of ``mask`` on an input-to-logits path, by depth-first search over auto-circuit's
    Edge objects, nodes identified by (layer, head_idx) rather than by name."""
    edges = sorted_edges(pm)
    node = lambda n: (n.layer, n.head_idx)  # noqa: E731
    chosen = [(node(e.src), node(e.dest)) for j, e in enumerate(edges) if mask[j]]
    start = node(next(e.src for e in edges if e.src.name == "Resid Start"))
    end = node(max(edges, key=lambda e: e.dest.layer).dest)  # the logits: the last layer

    forward = reachable(start, lambda u: [d for s, d in chosen if s == u])
    backward = reachable(end, lambda v: [s for s, d in chosen if d == v])
    return np.array([bool(mask[j]) and node(e.src) in forward and node(e.dest) in backward
                     for j, e in enumerate(edges)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pruned_and_greedy_keep_exactly_the_edges_on_paths_of_a_real_graph(tiny_pm, seed):
    c = Circuit.from_prune_scores(random_prune_scores(tiny_pm, seed), tiny_pm)
    for count in (1, 3, 6, 10, 20, 46):
        for sel in (c.top(count), c.top(count, "signed"), c.greedy(count, prune=False)):
            mask = sel.mask.numpy()
            expected = on_path_oracle(tiny_pm, mask)
            assert np.array_equal(sel.pruned().mask.numpy(), expected)
        grown = c.greedy(count)
        assert np.array_equal(grown.mask.numpy(), on_path_oracle(tiny_pm, grown.mask.numpy()))
        assert c.greedy(count, prune=False).size == count  # greedy takes exactly count edges


@pytest.mark.parametrize("seed,decimals", [(0, None), (1, 1), (2, 0)])
def test_top_gives_the_edge_sets_of_auto_circuits_threshold(tiny_pm, seed, decimals):
    """Oracle: auto-circuit's ``prune_scores_threshold`` on the PruneScores, every edge at or
    above it kept (``run_circuits``' rule); rounded scores make ties."""
    from auto_circuit.utils.tensor_ops import prune_scores_threshold

    ps = random_prune_scores(tiny_pm, seed, decimals)
    c = Circuit.from_prune_scores(ps, tiny_pm)
    mag = c.scores.abs()
    for count in range(0, c.n_edges + 1):
        threshold = float(prune_scores_threshold(ps, count))
        assert torch.equal(c.top(count).mask, mag >= threshold), count


def test_prune_scores_round_trip_against_auto_circuits_edge_lookup(tiny_pm):
    ps = random_prune_scores(tiny_pm, 4)
    c = Circuit.from_prune_scores(ps, tiny_pm)
    edges = sorted_edges(tiny_pm)
    # oracle: auto-circuit's Edge.prune_score reads each edge's score from PruneScores
    assert c.scores.tolist() == [float(e.prune_score(ps)) for e in edges]
    assert list(c.edge_names) == [e.name for e in edges]
    back = c.to_prune_scores(device=torch.device("cpu"))
    assert set(back) == set(ps) and all(torch.equal(back[k], ps[k]) for k in ps)
    assert all(back[k].dtype == torch.float32 for k in back)
    sub = c.top(5).pruned()
    sub_ps = sub.to_prune_scores(dtype=torch.float64)
    for j, e in enumerate(edges):  # the circuit's edges keep their scores, others read 0
        want = float(e.prune_score(ps)) if bool(sub.mask[j]) else 0.0
        assert float(e.prune_score(sub_ps)) == want


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_prune_scores_on_a_cuda_device(tiny_pm):
    c = Circuit.from_prune_scores(random_prune_scores(tiny_pm, 5), tiny_pm)
    ps = c.to_prune_scores(device="cuda")
    assert all(t.device.type == "cuda" for t in ps.values())
    assert torch.equal(Circuit.from_prune_scores(ps, tiny_pm).scores, c.scores)


def test_save_load_round_trip(tiny_pm, tmp_path):
    c = Circuit.from_prune_scores(random_prune_scores(tiny_pm, 6), tiny_pm,
                                  meta={"label": "cluster 0"})
    sub = c.greedy(8)
    sub.save(tmp_path / "c")
    back = Circuit.load(tmp_path / "c")
    assert torch.equal(back.scores, c.scores) and torch.equal(back.mask, sub.mask)
    assert back.edge_names == c.edge_names and back.layout == c.layout
    assert back.graph.same_as(edge_graph(tiny_pm)) and back.meta == {"label": "cluster 0"}
    assert back.edges == sub.edges and repr(back) == f"Circuit 'cluster 0'({sub.size} of 46 edges)"
    assert torch.equal(back.top(3).mask, sub.top(3).mask)  # selection works without the model
    assert torch.equal(back.pruned().mask, sub.mask)
    with pytest.raises(FileNotFoundError, match="not a saved Circuit"):
        Circuit.load(tmp_path / "nothing")


def test_a_circuit_saved_in_the_first_format_still_loads(tiny_pm, tmp_path):
    """Format 1 (one circuit as ``scores`` and ``mask``) written by hand with the bundle
    writer; it reads back as the same circuit."""
    from auto_circuit_dcd.files import save_bundle

    c = Circuit.from_prune_scores(random_prune_scores(tiny_pm, 7), tiny_pm, meta={"label": "x"})
    sub = c.top(5)
    save_bundle(tmp_path / "old", {"scores": sub.scores, "mask": sub.mask},
                {"format_version": 1, "n_edges": c.n_edges, "edge_names": list(c.edge_names),
                 "layout": c.layout.to_json(), "graph": c.graph.to_json(), "meta": c.meta},
                "circuit.safetensors", "circuit.json")
    back = Circuit.load(tmp_path / "old")
    assert torch.equal(back.scores, c.scores) and torch.equal(back.mask, sub.mask)
    assert back.meta == {"label": "x"} and back.graph.same_as(c.graph)


def test_named_circuits_share_one_file(tiny_pm, tmp_path):
    """Several circuits, their edge sets and a caller's tensors in one file; a circuit of
    all edges stores no mask."""
    from safetensors.torch import load_file

    from auto_circuit_dcd.circuits.circuit import load_circuits, save_circuits

    a = Circuit.from_prune_scores(random_prune_scores(tiny_pm, 8), tiny_pm, meta={"label": "a"})
    b = Circuit.from_prune_scores(random_prune_scores(tiny_pm, 9), tiny_pm).top(6)
    extra = {"a.edges.abs": torch.ones(2, a.n_edges, dtype=torch.bool)}
    save_circuits(tmp_path, {"a": a, "b": b}, "c.safetensors", "c.json", extra_tensors=extra,
                  extra_meta={"note": 1})
    assert sorted(load_file(str(tmp_path / "c.safetensors"))) == ["a", "a.edges.abs", "b",
                                                                   "b.mask"]
    files = load_circuits(tmp_path, "c.safetensors", "c.json")
    assert list(files.circuits) == ["a", "b"] and files.meta["note"] == 1
    assert torch.equal(files.circuits["b"].mask, b.mask) and files.circuits["a"].size == a.n_edges
    assert torch.equal(files.circuits["a"].scores, a.scores)
    assert list(files.tensors) == ["a.edges.abs"] and files.circuits["a"].meta == {"label": "a"}
    with pytest.raises(ValueError, match="not one"):
        files.one()


def test_from_matrix_is_the_mean_of_rows(tiny_pm):
    from conftest import random_examples

    from auto_circuit_dcd.data import make_loader

    A = dcd.attribute(tiny_pm, make_loader(random_examples(6), batch_size=3), progress=False)
    c = Circuit.from_matrix(A, rows=[0, 2, 4])
    assert torch.allclose(c.scores, A.scores[[0, 2, 4]].double().mean(0), atol=1e-6)
    assert c.graph.same_as(edge_graph(tiny_pm))  # derived from the matrix's names and layout


def test_selection_functions_on_vectors_and_rows():
    s = np.array([4.0, -3.0, 2.0, 1.0, 0.0])
    assert np.flatnonzero(top_mask(s, 2)).tolist() == [0, 1]
    assert np.flatnonzero(top_mask(s, 2, "signed")).tolist() == [0, 2]
    # rows and a vector share one implementation: row i of the matrix = the vector rule
    X = np.stack([s, -s[::-1], np.zeros(5), np.array([1.0, 1.0, 1.0, 1.0, 0.0])])
    rows = mass_mask(X, 0.7)
    for i in range(len(X)):
        assert np.array_equal(rows[i], mass_mask(X[i], 0.7))
    assert np.flatnonzero(rows[0]).tolist() == [0, 1]    # 4 + 3 = 7 of 10
    assert np.flatnonzero(rows[1]).tolist() == [3, 4]    # the same, reversed
    assert not rows[2].any()                             # all zero: nothing
    assert np.flatnonzero(rows[3]).tolist() == [0, 1, 2]  # ties by edge index
    with pytest.raises(ValueError, match="NaN or inf"):
        mass_mask(np.array([1.0, np.nan]))
