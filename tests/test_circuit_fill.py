"""``Circuit.top_connected``: the pruned top edges refilled down the ranking to the asked size.

Oracles: the hand-built graph of ``test_circuit.py`` with each case worked out by hand, and,
on a real tiny model's graph, EAP-IG's semantics written here from its definition:
``apply_topn(m, prune=True)`` (the ``m`` best edges, then EAP-IG's ``prune``: drop nodes
with no incoming edge but the input, or no outgoing edge but the logits, with their
edges, until nothing changes) for ``m = n, n + 1, ...`` until ``n`` edges are left."""

import numpy as np
import pytest
import torch
from test_circuit import HAND_LAYOUT, HAND_NAMES, HAND_SCORES, kept

from auto_circuit_dcd.circuits.circuit import Circuit
from auto_circuit_dcd.circuits.graph import edge_graph
from auto_circuit_dcd.model.edges import edge_layout


@pytest.fixture()
def hand():
    return Circuit(torch.tensor(HAND_SCORES), HAND_NAMES, HAND_LAYOUT)


# by |s|: 5, 0, 1, 3, 6, 2, 4; signed: 0, 1, 3, 6, 2, 4, 5 (edges listed in test_circuit.py)
@pytest.mark.parametrize("count,ranking,expected", [
    (0, "abs", []),
    (1, "abs", [0, 5]),              # {5} has no path; {5, 0}: input -Q-> A0.0 -> logits
    (2, "abs", [0, 5]),              # top(2).pruned() already holds 2
    (3, "abs", [0, 1, 5]),
    (4, "abs", [0, 1, 3, 5, 6]),     # top(4) keeps 3 on paths; edge 6 brings 3 and itself
    (1, "signed", [0, 1, 3, 6]),     # nothing reaches the logits before edge 6, 4th
    (3, "signed", [0, 1, 3, 6]),
    (5, "signed", [0, 1, 2, 3, 6]),
    (7, "abs", list(range(7))),
    (99, "abs", list(range(7))),     # more than there are: every edge on a path
])
def test_top_connected_by_hand(hand, count, ranking, expected):
    assert kept(hand.top_connected(count, ranking)) == expected


def test_top_connected_stays_within_a_circuit_and_refuses_bad_counts(hand):
    sub = hand.with_mask(np.isin(np.arange(7), [0, 1, 5, 6]))  # 6's source MLP 0 is unfed
    assert kept(sub.top_connected(4)) == [0, 1, 5]             # all its on-path edges
    assert kept(hand.top(3, "signed").pruned()) == []          # what topn-prune would keep
    with pytest.raises(ValueError, match="non-negative"):
        hand.top_connected(-1)


def eap_ig_prune(names, mask):
    """EAP-IG's ``Graph.prune`` run to its fixed point over nodes read from edge names."""
    def node(dest):
        head, _, letter = dest.rpartition(".")
        return head if letter in ("Q", "K", "V") else dest

    edges = {j: (names[j].split("->")[0], node(names[j].split("->")[1]))
             for j in np.flatnonzero(mask)}
    while True:
        srcs = {s for s, _ in edges.values()}
        dests = {d for _, d in edges.values()}
        dead = {s for s in srcs if s != "Resid Start" and s not in dests}
        dead |= {d for d in dests if d != "Resid End" and d not in srcs}
        keep = {j: e for j, e in edges.items() if e[0] not in dead and e[1] not in dead}
        if len(keep) == len(edges):
            break
        edges = keep
    out = np.zeros(len(names), dtype=bool)
    out[list(edges)] = True
    return out


def eap_ig_refill(names, scores, count):
    """``apply_topn(m, prune=True)`` for the smallest ``m >= count`` keeping ``count``."""
    order = np.argsort(-np.abs(scores), kind="stable")
    for m in range(count, len(names) + 1):
        mask = np.zeros(len(names), dtype=bool)
        mask[order[:m]] = True
        pruned = eap_ig_prune(names, mask)
        if pruned.sum() >= count:
            return pruned
    return pruned


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top_connected_is_eap_igs_topn_refilled_on_a_real_graph(tiny_pm, seed):
    names, layout = edge_layout(tiny_pm)
    scores = torch.randn(len(names), generator=torch.Generator().manual_seed(seed)).double()
    c = Circuit(scores, names, layout, graph=edge_graph(tiny_pm))
    for count in (1, 3, 10, 30, len(names) // 2):
        got = c.top_connected(count).mask.numpy()
        assert np.array_equal(got, eap_ig_refill(names, scores.numpy(), count)), count
        assert got.sum() >= count
        # minimal: one edge fewer from the ranking keeps fewer than asked
        m = int(np.sum(np.abs(scores.numpy()) >= np.abs(scores.numpy())[got].min()))
        assert c.top(m - 1).pruned().size < count <= c.top(m).pruned().size
