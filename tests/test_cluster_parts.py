"""Preprocessing, reduction, divisive clustering and k-selection rules against hand values."""

import numpy as np
import pytest

from auto_circuit_dcd.cluster import DivisiveClustering
from auto_circuit_dcd.cluster.divisive import divisive_path, within_distance
from auto_circuit_dcd.cluster.preprocess import jaccard_distances, preprocess
from auto_circuit_dcd.cluster.reduce import effective_components, make_reducer
from auto_circuit_dcd.cluster.clusterers import PATH_CLUSTERERS
from auto_circuit_dcd.cluster.select_k import (chord_elbow, gap_choice, largest_merge_gap,
                                               merge_gaps, within_ss)
from auto_circuit_dcd.circuits.selection import mass_mask


def test_mass_mask_keeps_smallest_set_reaching_gamma():
    X = np.array([[3.0, -1.0, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    m = mass_mask(X, gamma=0.8)
    # row 0: |s| total 5; 3 + 1 = 4 = 0.8 * 5 reached with two edges
    assert m[0].tolist() == [True, True, False, False]
    assert m[1].tolist() == [False] * 4  # all-zero row keeps nothing
    assert m[2].sum() == 4 and mass_mask(X, gamma=0.5)[2].sum() == 2  # ties by column order
    np.testing.assert_array_equal(preprocess(X, "binary", 0.8), m.astype(float))
    np.testing.assert_array_equal(preprocess(X, "sparse", 0.8)[0], [3.0, -1.0, 0.0, 0.0])


def test_row_transforms():
    X = np.array([[3.0, -4.0], [0.0, 0.0]])
    np.testing.assert_array_equal(preprocess(X, "l2"), [[0.6, -0.8], [0.0, 0.0]])
    np.testing.assert_array_equal(preprocess(X, "absolute"), [[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_array_equal(preprocess(X, "raw"), X)
    with pytest.raises(ValueError, match="preprocessing must be one of"):
        preprocess(X, "log")
    with pytest.raises(ValueError, match="gamma"):
        mass_mask(X, 0.0)


def test_jaccard_distances():
    m = np.array([[1, 1, 0], [1, 0, 1], [0, 0, 0], [0, 0, 0]], dtype=bool)
    d = jaccard_distances(m)
    assert d[0, 1] == pytest.approx(1 - 1 / 3)
    assert d[2, 3] == 0.0 and d[0, 2] == 1.0


def test_component_counts_shrink_with_small_data():
    assert effective_components("svd", 20, 100, 5000) == 20
    assert effective_components("svd", 20, 8, 5000) == 7
    assert effective_components("svd", 20, 100, 6) == 5
    assert effective_components("pca", 20, 100, 6) == 6
    Z = make_reducer("svd", 20, 8, 30, seed=0).fit_transform(np.random.RandomState(0).rand(8, 30))
    assert Z.shape == (8, 7)


def test_divisive_bisects_the_largest_cluster():
    X = np.array([[0.0], [1.0], [10.0], [11.0], [30.0]])
    path = divisive_path(X, 4)
    # average linkage on all five: {0, 1, 10, 11} vs {30}
    assert path[2].tolist() == [0, 0, 0, 0, 1]
    # the largest cluster {0, 1, 10, 11} is bisected next
    assert path[3].tolist() == [0, 0, 2, 2, 1]
    assert path[4].tolist() in ([0, 3, 2, 2, 1], [0, 0, 2, 3, 1])
    assert within_distance(X, path[3]) == pytest.approx(0.5 * 4)
    est = DivisiveClustering(n_clusters=3).fit(X)
    assert est.labels_.tolist() == [0, 0, 2, 2, 1]


def test_divisive_stops_when_nothing_can_be_split():
    X = np.array([[1.0], [1.0], [1.0], [5.0]])
    path = divisive_path(X, 4)
    assert max(path) == 2


def test_chord_elbow():
    # sharp bend at k = 3
    assert chord_elbow({1: 100.0, 2: 60.0, 3: 10.0, 4: 8.0, 5: 7.0, 6: 6.0}) == 3


def test_agglomerative_elbow_is_the_largest_jump_in_average_linkage_heights():
    """The production elbow of ``agglomerative`` against merge heights worked out by hand."""
    X = np.array([[0.0], [0.1], [5.0], [5.2], [20.0]])
    # average linkage: {0, 0.1} at 0.1; {5, 5.2} at 0.2; those two pairs at
    # mean(5, 5.2, 4.9, 5.1) = 5.05; then 20 at mean(20, 19.9, 15, 14.8) = 17.425.
    # k clusters remain before the (n-k+1)-th merge: jumps k=2: 17.425 - 5.05,
    # k=3: 5.05 - 0.2, k=4: 0.2 - 0.1
    spec = PATH_CLUSTERERS["agglomerative"]
    path = spec.path(X, 4, 0)
    assert path[3].tolist() in ([0, 0, 1, 1, 2], [0, 0, 2, 2, 1])
    curve = spec.elbow_curve(X, path)
    assert set(curve) == {2, 3, 4}
    for k, jump in {2: 12.375, 3: 4.85, 4: 0.1}.items():
        assert curve[k] == pytest.approx(jump)
    assert spec.elbow_choice(curve, 4) == 2
    assert merge_gaps(np.array([6.2, 0.1, 5.2, 0.2]), [2, 3, 4]) == pytest.approx(
        {2: 1.0, 3: 5.0, 4: 0.1})  # heights in any order
    assert largest_merge_gap({}, 4) == 2


def test_agglomerative_path_at_k_equal_to_n_puts_each_example_alone():
    X = np.array([[0.0], [1.0], [3.0], [7.0]])
    path = PATH_CLUSTERERS["agglomerative"].path(X, 4, 0)
    assert sorted(path[4].tolist()) == [0, 1, 2, 3]


def test_gap_choice_rule():
    gap = {1: 0.1, 2: 0.5, 3: 0.9, 4: 0.92, 5: 0.95}
    se = {k: 0.05 for k in gap}
    assert gap_choice(gap, se) == 3  # 0.9 >= 0.92 - 0.05
    assert gap_choice({1: 0.7, 2: 0.6}, {1: 0.1, 2: 0.1}) == 1
    assert gap_choice({2: 0.1, 3: 0.5}, {2: 0.0, 3: 0.0}, min_k=2) == 3  # none holds: largest


def test_within_ss_by_hand():
    X = np.array([[0.0], [2.0], [10.0]])
    assert within_ss(X, np.array([0, 0, 1])) == pytest.approx(2.0)


def _w_pairwise(X, labels):
    """Tibshirani et al.'s W_k written their way: sum_r D_r / (2 n_r), D_r the sum of
    squared distances over ordered pairs within cluster r."""
    total = 0.0
    for c in np.unique(labels):
        block = X[labels == c]
        d = ((block[:, None, :] - block[None, :, :]) ** 2).sum(-1)
        total += d.sum() / (2 * len(block))
    return total


def _chunks(data, max_k):
    """A deterministic clusterer: sort by the first coordinate, cut into k equal runs."""
    order = np.argsort(data[:, 0], kind="stable")
    out = {}
    for k in range(1, max_k + 1):
        labels = np.empty(len(data), dtype=int)
        for c, part in enumerate(np.array_split(order, k)):
            labels[part] = c
        out[k] = labels
    return out


def test_gap_statistic_against_the_definition_written_another_way():
    from auto_circuit_dcd.cluster.select_k import gap_statistic, reference_sets

    rs = np.random.RandomState(0)
    X = np.vstack([rs.normal(0, 0.3, (12, 3)), rs.normal(4, 0.3, (12, 3))])
    B, K = 6, 4
    got = gap_statistic(X, _chunks, K, B, np.random.RandomState(7))
    refs = reference_sets(X, B, np.random.RandomState(7))  # the same draws
    assert refs.shape == (B, 24, 3)
    for k in range(1, K + 1):
        ref_logs = np.array([np.log(_w_pairwise(R, _chunks(R, K)[k])) for R in refs])
        expected_gap = ref_logs.sum() / B - np.log(_w_pairwise(X, _chunks(X, K)[k]))
        sd = np.sqrt(((ref_logs - ref_logs.mean()) ** 2).sum() / B)
        # float64 sums of 24 terms in two orders: 1e-9 relative is far above rounding
        assert got["gap"][k] == pytest.approx(expected_gap, rel=1e-9)
        assert got["se"][k] == pytest.approx(sd * np.sqrt(1 + 1 / B), rel=1e-9)
    # two planted blobs: the gap rule picks k = 2
    assert gap_choice(got["gap"], got["se"]) == 2


def test_reference_sets_fill_the_box_of_the_principal_axes():
    from auto_circuit_dcd.cluster.select_k import reference_sets

    rs = np.random.RandomState(1)
    X = rs.normal(size=(50, 2)) * [5.0, 0.5] @ np.array([[0.6, 0.8], [-0.8, 0.6]])
    refs = reference_sets(X, 200, np.random.RandomState(0))
    # in principal coordinates the data's extent along each axis, written with an
    # eigen-decomposition of the covariance (not the SVD the code uses)
    _, vecs = np.linalg.eigh(np.cov((X - X.mean(0)).T))
    proj = (X - X.mean(0)) @ vecs
    width = np.sort(proj.max(0) - proj.min(0))
    ref_width = np.sort(refs.max(axis=(0, 1)) - refs.min(axis=(0, 1)))
    # 200 x 50 uniform draws reach within 1% of each edge of the box
    np.testing.assert_allclose(ref_width, width, rtol=0.01)
