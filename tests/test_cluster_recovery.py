"""Planted blobs must be recovered (ARI 1, right k) by every clusterer; one blob gives one cluster."""

import numpy as np
import pytest
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.metrics import adjusted_rand_score

from auto_circuit_dcd.cluster import GroupedDiscovery

SIZES = (30, 18, 9)


def blobs(sizes=SIZES, d=40, sep=10.0, noise=1.0, seed=0, centers=None):
    rng = np.random.RandomState(seed)
    if centers is None:
        centers = rng.normal(0.0, sep, size=(len(sizes), d))
    X = np.concatenate([c + noise * rng.normal(size=(s, d)) for c, s in zip(centers, sizes)])
    return X, np.repeat(np.arange(len(sizes)), sizes), centers


@pytest.fixture(scope="module")
def planted():
    return blobs()


@pytest.mark.parametrize("clusterer", ["agglomerative", "divisive", "kmeans", "hdbscan", "auto"])
def test_planted_blobs_recovered_with_right_k(planted, clusterer):
    X, y, _ = planted
    gd = GroupedDiscovery(clusterer=clusterer, max_clusters=6, gap_references=10,
                          random_state=0).fit(X)
    assert gd.n_clusters_ == len(SIZES)
    assert adjusted_rand_score(y, gd.labels_) == 1.0
    # relabelled by size: 0 is the largest cluster
    assert gd.cluster_sizes_ == {0: 30, 1: 18, 2: 9}
    assert not gd.single_cluster_test_["one_cluster"]


@pytest.mark.parametrize("clusterer", ["agglomerative", "divisive", "kmeans"])
def test_each_k_criterion_agrees_on_separated_blobs(planted, clusterer):
    X, _, _ = planted
    # "median" reads all three criteria, so the gap statistic is computed too
    gd = GroupedDiscovery(clusterer=clusterer, max_clusters=6, gap_references=10,
                          k_rule="median", random_state=0).fit(X)
    choice = gd.k_choices_[clusterer]
    assert (choice["silhouette"], choice["elbow"], choice["gap"]) == (3, 3, 3)
    rows = [r for r in gd.selection_ if r["method"] == clusterer]
    assert [r["k"] for r in rows] == [2, 3, 4, 5, 6]
    assert [r["k"] for r in rows if r["selected"]] == [3]
    best = max(rows, key=lambda r: r["silhouette"])
    assert best["k"] == 3


def test_five_blobs_of_unequal_sizes():
    X, y, _ = blobs(sizes=(25, 16, 12, 8, 6), seed=3)
    gd = GroupedDiscovery(max_clusters=8, gap_references=10, random_state=0).fit(X)
    assert gd.n_clusters_ == 5
    assert adjusted_rand_score(y, gd.labels_) == 1.0
    assert gd.method_ in ("agglomerative", "divisive", "kmeans")


@pytest.mark.parametrize("est", [AgglomerativeClustering(n_clusters=3, linkage="average"),
                                 KMeans(n_clusters=3, n_init=10, random_state=0)])
def test_any_sklearn_clusterer_instance(planted, est):
    X, y, centers = planted
    gd = GroupedDiscovery(clusterer=est, random_state=0).fit(X)
    assert adjusted_rand_score(y, gd.labels_) == 1.0
    assert gd.method_ == type(est).__name__
    assert not hasattr(est, "labels_")  # the given instance is cloned, not fitted
    X_new, y_new, _ = blobs(sizes=(5, 5, 5), seed=9, centers=centers)
    assert adjusted_rand_score(y_new, gd.predict(X_new)) == 1.0


@pytest.mark.parametrize("clusterer", ["agglomerative", "divisive", "kmeans", "hdbscan", "auto"])
def test_predict_routes_new_points_of_the_planted_blobs(planted, clusterer):
    X, y, centers = planted
    gd = GroupedDiscovery(clusterer=clusterer, max_clusters=6, gap_references=10,
                          random_state=0).fit(X)
    X_new, y_new, _ = blobs(sizes=(6, 6, 6), seed=11, centers=centers)
    pred = gd.predict(X_new)
    # the blob -> label map learnt on training data must carry over to new points
    train_map = {int(t): int(gd.labels_[y == t][0]) for t in range(3)}
    assert pred.tolist() == [train_map[int(t)] for t in y_new]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kind", ["gaussian", "uniform"])
def test_structureless_data_give_one_cluster(kind, seed):
    rng = np.random.RandomState(seed)
    X = (rng.normal(size=(60, 40)) + 3.0) if kind == "gaussian" else rng.uniform(size=(60, 40))
    gd = GroupedDiscovery(max_clusters=6, random_state=seed).fit(X)
    assert gd.n_clusters_ == 1
    assert gd.labels_.tolist() == [0] * 60
    t = gd.single_cluster_test_
    assert t["one_cluster"] and t["gap_1"] >= t["gap_2"] - t["se_2"]
    assert gd.space_selection_.one_cluster  # no candidate space shows structure
    assert gd.predict(X[:5]).tolist() == [0] * 5


def test_two_close_but_separated_blobs_are_not_called_one():
    X, y, _ = blobs(sizes=(30, 30), d=40, sep=1.0, noise=1.0, seed=5,
                    centers=np.stack([np.zeros(40), np.full(40, 1.5)]))
    gd = GroupedDiscovery(max_clusters=6, random_state=0).fit(X)
    assert not gd.single_cluster_test_["one_cluster"]
    assert adjusted_rand_score(y, gd.labels_) == 1.0


@pytest.mark.parametrize("preprocessing", ["raw", "absolute", "l2", "sparse", "binary", "rank",
                                           "auto"])
def test_every_preprocessing_recovers_blobs_of_distinct_edge_sets(preprocessing):
    """Each group puts its mass on its own 8 of 48 edges (a circuit per group)."""
    rng = np.random.RandomState(0)
    sizes, d = (20, 14, 8), 48
    X = 0.01 * rng.normal(size=(sum(sizes), d))
    y = np.repeat(np.arange(3), sizes)
    for g in range(3):
        X[np.ix_(y == g, np.arange(8 * g, 8 * g + 8))] += rng.uniform(2, 4, size=((y == g).sum(), 8))
    gd = GroupedDiscovery(clusterer="agglomerative", preprocessing=preprocessing, max_clusters=6,
                          gap_references=10, random_state=0).fit(X)
    assert gd.n_clusters_ == 3
    assert adjusted_rand_score(y, gd.labels_) == 1.0


@pytest.mark.parametrize("reduction", ["svd", "pca", "none"])
def test_reductions(planted, reduction):
    X, y, _ = planted
    gd = GroupedDiscovery(clusterer="kmeans", reduction=reduction, n_components=5,
                          max_clusters=5, gap_references=5, random_state=0).fit(X)
    assert adjusted_rand_score(y, gd.labels_) == 1.0
    assert gd.embedding_.shape == (len(X), 40 if reduction == "none" else 5)


@pytest.mark.parametrize("rule,expected", [("largest", 4), ("smallest", 2), ("median", 3),
                                           ("silhouette", 3), ("elbow", 2), ("gap", 4)])
def test_k_rule_combines_the_three_choices(rule, expected):
    from auto_circuit_dcd.cluster.select_k import combine

    assert combine(rule, {"silhouette": 3, "elbow": 2, "gap": 4}) == expected
