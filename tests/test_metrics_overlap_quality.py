"""CPR/CMD, edge overlap and cluster quality against hand-computed values."""

import numpy as np
import pytest

from auto_circuit_dcd.circuits.circuit import Circuit
from auto_circuit_dcd.circuits.selection import mass_mask
from auto_circuit_dcd.evaluation import MIB_GRID, FaithfulnessResult
from auto_circuit_dcd.metrics import (
    cluster_quality,
    cmd,
    cpr,
    edge_overlap,
    overlap_matrix,
    purity,
    top_k_iou,
)
from auto_circuit_dcd.model.edges import EdgeLayout


# ----------------------------------------------------------------------------- curves
def test_cpr_cmd_on_known_curves():
    p = [0.0, 0.25, 0.5, 1.0]
    assert cpr((p, p)) == pytest.approx(0.5)          # f = p: area 1/2
    assert cmd((p, p)) == pytest.approx(0.5)          # 1 - p: area 1/2
    assert cpr({1.0: 2.0, 0.0: 2.0}) == pytest.approx(2.0)  # order does not matter
    assert cmd(([0.0, 1.0], [2.0, 2.0])) == 0.0                  # one-sided: above 1 is free
    assert cmd(([0.0, 1.0], [2.0, 2.0]), two_sided=True) == pytest.approx(1.0)
    # f crosses 1 between 0.5 and 1: trapezoids of max(0, 1 - f) by hand
    f = [0.0, 0.5, 0.5, 1.5]
    assert cmd((p, f)) == pytest.approx(0.25 * (1 + 0.5) / 2 + 0.25 * 0.5 + 0.5 * (0.5 + 0) / 2)
    assert cmd((p, f), two_sided=True) == pytest.approx(
        0.25 * 0.75 + 0.25 * 0.5 + 0.5 * (0.5 + 0.5) / 2)
    ones = np.ones(len(MIB_GRID))
    assert cpr((MIB_GRID, ones)) == pytest.approx(1.0 - 0.001)  # the grid starts at 0.1%


def test_cpr_accepts_result_objects_and_rejects_bad_curves():
    fr = np.array([0.0, 0.5, 1.0])
    r = FaithfulnessResult(fractions=fr, requested_counts=np.zeros(3, int),
                           achieved_counts=np.zeros(3, int), f=np.array([0.0, 1.0, 1.0]),
                           mu_circuit=np.zeros((2, 3)), mu_full=np.ones(2),
                           mu_empty=np.zeros(2), example_ids=[0, 1], n_edges=4)
    assert cpr(r) == pytest.approx(0.25 + 0.5)
    assert r.at(0.5) == 1.0
    with pytest.raises(KeyError):
        r.at(0.3)
    with pytest.raises(ValueError, match="two fractions"):
        cpr(([0.5], [1.0]))
    with pytest.raises(ValueError, match="distinct"):
        cpr(([0.5, 0.5], [1.0, 1.0]))


# ----------------------------------------------------------------------------- overlap
def test_mass_set_jaccard_and_iou_by_hand():
    a = np.array([4.0, -3.0, 2.0, 1.0, 0.0])   # |a| total 10
    b = np.array([0.0, 3.0, -4.0, 0.0, 1.0])   # |b| total 8
    # gamma 0.7: a needs 4 + 3 = 7 >= 7 -> {0, 1}; b needs 4 + 3 = 7 >= 5.6 -> {1, 2}
    assert np.flatnonzero(mass_mask(a, 0.7)).tolist() == [0, 1]
    assert np.flatnonzero(mass_mask(a, 0.71)).tolist() == [0, 1, 2]
    assert np.flatnonzero(mass_mask(b, 0.7)).tolist() == [1, 2]
    assert edge_overlap(a, b, gamma=0.7) == pytest.approx(1 / 3)
    # gamma 1: a = {0,1,2,3} (zeros carry no mass), b = {1,2,4}: 2 shared of 5
    assert edge_overlap(a, b, gamma=1.0) == pytest.approx(2 / 5)
    assert top_k_iou(a, b, 2) == pytest.approx(1 / 3)
    assert top_k_iou(a, b, 3) == pytest.approx(2 / 4)
    assert top_k_iou(a, a, 3) == 1.0
    assert np.isnan(edge_overlap(np.zeros(5), np.zeros(5)))


def test_overlap_of_circuits_and_vectors_and_matrix():
    names = ["Resid Start->A0.0.Q", "Resid Start->A0.0.K", "Resid Start->MLP 0",
             "Resid Start->Resid End", "A0.0->Resid End"]
    layout = EdgeLayout((("blocks.0.hook_q_input", (1, 1), 0, 1),
                         ("blocks.0.hook_k_input", (1, 1), 1, 2),
                         ("blocks.0.hook_mlp_in", (1,), 2, 3),
                         ("blocks.0.hook_resid_post", (2,), 3, 5)))
    va, vb = np.array([2.0, 1.0, 0.0, 4.0, -3.0]), np.array([-4.0, 0.0, 1.0, 0.0, 3.0])
    ca, cb = Circuit(va, names, layout), Circuit(vb, names, layout)
    assert edge_overlap(ca, cb, 0.7) == edge_overlap(va, vb, 0.7) == pytest.approx(1 / 3)
    assert top_k_iou(ca, cb, 3) == top_k_iou(va, vb, 3) == pytest.approx(2 / 4)
    # a circuit's edge set is taken among its own edges: {0, 1, 3} ranks 3 (4), 0 (2), 1 (1)
    sub = ca.with_mask(np.array([True, True, False, True, False]))
    assert top_k_iou(sub, Circuit(np.array([0.0, 1.0, 0, 5.0, 0]), names, layout), 2) == \
        pytest.approx(1 / 3)  # {0, 3} vs {1, 3}
    m = overlap_matrix({"a": va, "b": vb, "c": -va}, gamma=0.7)
    assert m.labels == ["a", "b", "c"]
    np.testing.assert_allclose(m.matrix, m.matrix.T)
    assert m.matrix[0, 2] == 1.0 and m.matrix[0, 1] == pytest.approx(edge_overlap(va, vb, 0.7))
    assert m.set_sizes.tolist() == [2, 2, 2]
    assert overlap_matrix({"a": ca, "b": cb}, k=3).matrix[0, 1] == pytest.approx(2 / 4)
    ps_a = ca.to_prune_scores()
    with pytest.raises(TypeError, match="Circuit.from_prune_scores"):
        edge_overlap(ps_a, vb)
    with pytest.raises(ValueError):
        edge_overlap(va, vb[:4])
    other = Circuit(vb, names[:3] + names[:2:-1], layout)  # the last two swapped
    with pytest.raises(ValueError, match="different edge names"):
        edge_overlap(ca, other)
    inputs = va.copy()
    edge_overlap(inputs, vb)
    assert np.array_equal(inputs, va)


# ----------------------------------------------------------------------------- quality
def test_cluster_quality_by_hand():
    true = ["a", "a", "a", "b", "b", "b"]
    pred = [0, 0, 1, 1, 1, 1]
    q = cluster_quality(true, pred)
    assert q.purity == pytest.approx(5 / 6) == purity(true, pred)
    assert q.per_cluster == {0: 1.0, 1: pytest.approx(3 / 4)}
    assert q.majority_label == {0: "a", 1: "b"}
    assert q.per_label == {"a": pytest.approx(2 / 3), "b": 1.0}
    assert q.contingency.tolist() == [[2, 0], [1, 3]]
    # ARI by hand: sum C(n_ij,2) = 1 + 3 = 4; rows C(2,2)+C(4,2) = 7; cols 3 + 3 = 6; C(6,2) = 15
    expected = 7 * 6 / 15
    ari = (4 - expected) / ((7 + 6) / 2 - expected)
    assert q.ari == pytest.approx(ari)
    perfect = cluster_quality(true, [5, 5, 5, 2, 2, 2])
    assert perfect.purity == 1.0 and perfect.ari == pytest.approx(1.0)
    assert perfect.nmi == pytest.approx(1.0)
    assert cluster_quality(true, [0] * 6).nmi == pytest.approx(0.0)
    with pytest.raises(ValueError, match="6 known labels for 5"):
        cluster_quality(true, pred[:5])


def test_prune_scores_are_accepted_with_the_model(tiny_pm):
    """auto-circuit ``PruneScores`` filled through auto-circuit's own ``Edge.patch_idx``,
    compared by hand: a = {E1: 4, E2: -3, E3: 2, E4: 1}, b = {E2: 3, E3: -4, E5: 1}.
    gamma 0.7: a keeps {E1, E2} (7 of 10), b keeps {E3, E2} (7 >= 5.6): Jaccard 1/3;
    top 3: {E1, E2, E3} vs {E3, E2, E5}: 2/4."""
    from auto_circuit_dcd.circuits.circuit import Circuit

    edges = sorted(tiny_pm.edges, key=lambda e: e.name)
    e1, e2, e3, e4, e5 = edges[0], edges[7], edges[20], edges[33], edges[41]

    def prune_scores(values):
        ps = tiny_pm.new_prune_scores()
        for edge, v in values.items():
            ps[edge.dest.module_name][edge.patch_idx] = v
        return ps

    a = prune_scores({e1: 4.0, e2: -3.0, e3: 2.0, e4: 1.0})
    b = prune_scores({e2: 3.0, e3: -4.0, e5: 1.0})
    assert edge_overlap(a, b, gamma=0.7, model=tiny_pm) == pytest.approx(1 / 3)
    assert top_k_iou(a, b, 3, model=tiny_pm) == pytest.approx(2 / 4)
    cb = Circuit.from_prune_scores(b, tiny_pm)
    assert set(cb.top(3).edges) == {e2.name, e3.name, e5.name}
    assert edge_overlap(a, cb, gamma=0.7, model=tiny_pm) == pytest.approx(1 / 3)
    m = overlap_matrix({"a": a, "b": b}, gamma=0.7, model=tiny_pm)
    assert m.matrix[0, 1] == pytest.approx(1 / 3) and m.set_sizes.tolist() == [2, 2]
    assert overlap_matrix({"a": a, "b": b}, k=3, model=tiny_pm).matrix[0, 1] == \
        pytest.approx(2 / 4)
    for call in (lambda: edge_overlap(a, b), lambda: top_k_iou(a, cb, 3),
                 lambda: overlap_matrix({"a": a, "b": b})):
        with pytest.raises(TypeError, match="pass model="):
            call()
