"""Preprocessing, reduction, divisive clustering and k-selection rules against hand values."""

import numpy as np
import pytest

from auto_circuit_dcd.circuits.selection import mass_mask
from auto_circuit_dcd.cluster import DivisiveClustering
from auto_circuit_dcd.cluster.clusterers import PATH_CLUSTERERS
from auto_circuit_dcd.cluster.divisive import divisive_path, within_distance
from auto_circuit_dcd.cluster.preprocess import jaccard_distances, preprocess
from auto_circuit_dcd.cluster.reduce import effective_components, make_reducer
from auto_circuit_dcd.cluster.select_k import (
    chord_elbow,
    gap_choice,
    largest_merge_gap,
    merge_gaps,
    within_ss,
)


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
    se = dict.fromkeys(gap, 0.05)
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


# ------------------------------------------------------- spaces, SVD, shared work
def test_rank_rows_by_hand():
    X = np.array([[3.0, -1.0, 0.5, -4.0], [0.0, 0.0, 1.0, 0.0]])
    # |s| order, smallest first, ties by column: row 0: 0.5, 1, 3, 4; row 1: 0, 0, 0, 1
    np.testing.assert_allclose(preprocess(X, "rank"), [[2 / 3, 1 / 3, 0.0, 1.0],
                                                       [0.0, 1 / 3, 1.0, 2 / 3]])


@pytest.mark.parametrize("shape", [(12, 40), (40, 12)])
def test_gram_svd_is_the_exact_truncated_svd(shape):
    """Oracle: numpy's full SVD of the uncentred rows (what TruncatedSVD approximates)."""
    from auto_circuit_dcd.cluster.reduce import GramSVD

    X = np.random.RandomState(0).normal(size=shape) + 0.5
    k = 5
    Z = GramSVD(k).fit_transform(X)
    u, s, vt = np.linalg.svd(X, full_matrices=False)
    np.testing.assert_allclose(np.abs(Z), np.abs(u[:, :k] * s[:k]), atol=1e-9)
    red = GramSVD(k).fit(X)
    np.testing.assert_allclose(red.singular_values_, s[:k], rtol=1e-9)
    np.testing.assert_allclose(red.transform(X), Z, atol=1e-9)
    # the sign rule: each component's largest |loading| is positive
    comp = red.components_
    assert (comp[np.arange(k), np.abs(comp).argmax(1)] > 0).all()
    # -X has the same right singular vectors up to sign: the rule gives the same components
    np.testing.assert_allclose(GramSVD(k).fit(-X).components_, comp, atol=1e-9)


def test_svd_reducer_uses_the_gram_form_where_one_side_is_small():
    from auto_circuit_dcd.cluster.reduce import GRAM_LIMIT, GramSVD

    assert isinstance(make_reducer("svd", 20, 160, 123211, seed=0), GramSVD)
    assert not isinstance(make_reducer("svd", 20, GRAM_LIMIT + 1, GRAM_LIMIT + 5, seed=0),
                          GramSVD)


def test_silhouettes_from_one_distance_matrix_equal_scikit_learns():
    from sklearn.metrics import silhouette_score

    from auto_circuit_dcd.cluster.select_k import silhouette_by_k

    rs = np.random.RandomState(0)
    X = rs.normal(size=(50, 4))
    X[5] = X[6]  # a duplicate row: a zero distance off the diagonal
    for _ in range(10):
        lab = rs.randint(-1, 4, size=50)
        lab[:3] = 7  # a cluster of three, and one of one (sklearn scores its member 0)
        lab[10] = 9
        keep = lab >= 0
        got = silhouette_by_k(X, {4: lab})[4]
        assert got == pytest.approx(silhouette_score(X[keep], lab[keep]), abs=1e-10)


def test_cut_linkage_equals_scipy_cut_tree():
    from scipy.cluster.hierarchy import cut_tree, linkage
    from sklearn.metrics import adjusted_rand_score

    from auto_circuit_dcd.cluster.clusterers import cut_linkage

    rs = np.random.RandomState(1)
    for n in (2, 7, 30):
        X = rs.normal(size=(n, 3))
        merges = linkage(X, method="average")
        for k in range(1, n + 1):
            mine, ref = cut_linkage(merges, k), cut_tree(merges, n_clusters=[k])[:, 0]
            assert len(set(mine.tolist())) == k
            assert adjusted_rand_score(ref, mine) == 1.0
            assert mine[0] == 0  # numbered by first row


def test_reference_curves_are_clustered_once_per_size_and_give_the_gap_statistic():
    from auto_circuit_dcd.cluster.select_k import ReferenceCurves, gap_statistic

    rs = np.random.RandomState(0)
    X = np.vstack([rs.normal(0, 0.3, (12, 3)), rs.normal(4, 0.3, (12, 3))])
    calls = []

    def counted(data, max_k):
        calls.append(len(data))
        return _chunks(data, max_k)

    curves = ReferenceCurves(X, 4, np.random.RandomState(7))
    shared = gap_statistic(X, counted, 3, 0, np.random.RandomState(0), curves=curves, key="c")
    assert calls == [24] * 4 + [24]  # four reference sets, then the data's own path
    again = gap_statistic(X, counted, 3, 0, np.random.RandomState(0), curves=curves, key="c")
    assert calls[5:] == [24] and again == shared  # references reused, only the data reclustered
    fresh = gap_statistic(X, _chunks, 3, 4, np.random.RandomState(7))  # the same draws
    for k in (1, 2, 3):
        assert shared["gap"][k] == pytest.approx(fresh["gap"][k], rel=1e-12)
    # a resample of 18 rows is compared with the first 18 points of each reference set
    curves.log_w("c", counted, 3, size=18)
    assert calls[6:] == [18] * 4
