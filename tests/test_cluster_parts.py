"""Preprocessing, reduction, divisive clustering and k-selection rules against hand values."""

import numpy as np
import pytest

from auto_circuit_dcd.cluster import DivisiveClustering
from auto_circuit_dcd.cluster.divisive import divisive_path, within_distance
from auto_circuit_dcd.cluster.preprocess import jaccard_distances, preprocess
from auto_circuit_dcd.cluster.reduce import effective_components, make_reducer
from auto_circuit_dcd.cluster.select_k import (chord_elbow, gap_choice, largest_merge_gap,
                                               within_ss)
from auto_circuit_dcd.selection import mass_mask


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


def test_chord_elbow_and_merge_gap():
    # sharp bend at k = 3
    assert chord_elbow({1: 100.0, 2: 60.0, 3: 10.0, 4: 8.0, 5: 7.0, 6: 6.0}) == 3
    # 5 points, merge heights ascending: after the merges at 0.1 and 0.2, three
    # clusters remain and the next merge jumps by 5.0 -> k = 3
    assert largest_merge_gap(np.array([0.1, 0.2, 5.2, 6.2]), 4) == 3
    # the last merge jumps by 5.7 -> k = 2
    assert largest_merge_gap(np.array([0.1, 0.2, 0.3, 6.0]), 4) == 2


def test_gap_choice_rule():
    gap = {1: 0.1, 2: 0.5, 3: 0.9, 4: 0.92, 5: 0.95}
    se = {k: 0.05 for k in gap}
    assert gap_choice(gap, se) == 3  # 0.9 >= 0.92 - 0.05
    assert gap_choice({1: 0.7, 2: 0.6}, {1: 0.1, 2: 0.1}) == 1
    assert gap_choice({2: 0.1, 3: 0.5}, {2: 0.0, 3: 0.0}, min_k=2) == 3  # none holds: largest


def test_within_ss_by_hand():
    X = np.array([[0.0], [2.0], [10.0]])
    assert within_ss(X, np.array([0, 0, 1])) == pytest.approx(2.0)
