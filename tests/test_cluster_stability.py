"""Cluster stability on planted structures: separated blobs come back on every resample;
a partition forced on structureless data does not."""

import dataclasses

import numpy as np
import pytest
from test_cluster_recovery import blobs

from auto_circuit_dcd.cluster import GroupedDiscovery, cluster_stability


@pytest.mark.parametrize("method", ["subsample", "bootstrap"])
def test_separated_blobs_are_stable(method):
    X, y, _ = blobs()
    gd = GroupedDiscovery(clusterer="agglomerative", max_clusters=6, gap_references=5,
                          random_state=0).fit(X)
    st = cluster_stability(gd, X, 8, method=method, random_state=0)
    # blobs 10 noise-sds apart: every resample finds the same 3 groups, exactly
    assert st.ari.tolist() == [1.0] * 8 and st.n_clusters.tolist() == [3] * 8
    assert st.co_assignment == {0: 1.0, 1: 1.0, 2: 1.0} == st.jaccard
    assert st.ari_mean == 1.0 and st.ari_std == 0.0
    d = st.to_dict()
    assert d["n_resamples"] == 8 and d["method"] == method and d["jaccard"]["2"] == 1.0
    assert st.fraction == {"subsample": 0.8, "bootstrap": 1.0}[method]


def test_structureless_data_forced_into_clusters_is_unstable():
    # one Gaussian blob cut into 3 by k-means: the cuts move with the sample. Measured on
    # three seeds: ARI mean 0.13-0.28, co-assignment 0.40-0.66 per cluster; the bounds below
    # leave room for other processors' floats and are far from the blobs' 1.0
    Z = np.random.RandomState(0).normal(size=(57, 40))
    gd = GroupedDiscovery(clusterer="kmeans", n_clusters=3, random_state=0).fit(Z)
    st = cluster_stability(gd, Z, 10, random_state=0)
    assert st.ari_mean < 0.5 and st.ari_std > 0.0
    assert all(v < 0.8 for v in st.co_assignment.values())
    assert all(v < 0.8 for v in st.jaccard.values())


def test_one_cluster_that_stays_one_is_stable():
    Z = np.random.RandomState(0).normal(size=(40, 10))
    gd = GroupedDiscovery(clusterer="agglomerative", gap_references=5, random_state=0).fit(Z)
    assert gd.n_clusters_ == 1  # the k=1 test sees one blob
    st = cluster_stability(gd, Z, 3, random_state=0)
    assert st.ari.tolist() == [1.0] * 3 and st.co_assignment == {0: 1.0}


def test_refits_cost_clustering_time_only(monkeypatch):
    """Every refit clusters the full fit's reduced rows: no preprocessing, no SVD (both
    counted by wrapping them), and the blobs still come back exactly."""
    from auto_circuit_dcd.cluster import spaces

    X, _, _ = blobs(sizes=(12, 10))
    gd = GroupedDiscovery(clusterer="kmeans", n_clusters=2, random_state=0).fit(X)
    calls = []
    monkeypatch.setattr(spaces, "preprocess", lambda *a, **k: calls.append("preprocess"))
    monkeypatch.setattr(spaces, "make_reducer", lambda *a, **k: calls.append("reducer"))
    st = cluster_stability(gd, X, 4, random_state=0)
    assert calls == [] and st.ari.tolist() == [1.0] * 4


def test_stability_rejects_bad_input():
    X, _, _ = blobs(sizes=(10, 10))
    with pytest.raises(Exception, match="not fitted"):
        cluster_stability(GroupedDiscovery(), X)
    gd = GroupedDiscovery(clusterer="kmeans", n_clusters=2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="fitted on 20 rows"):
        cluster_stability(gd, X[:15])
    with pytest.raises(ValueError, match="method must be one of"):
        cluster_stability(gd, X, method="jackknife")
    with pytest.raises(ValueError, match="at most 1.0"):
        cluster_stability(gd, X, fraction=1.5)
    with pytest.raises(ValueError, match="n_resamples"):
        cluster_stability(gd, X, 0)


def test_chosen_refits_only_the_clusterer_auto_picked(monkeypatch):
    """``clusterer="chosen"``: every refit runs the one clusterer ``"auto"`` kept (counted
    by wrapping each candidate's path), and the blobs still come back exactly."""
    from auto_circuit_dcd.cluster import clusterers

    X, _, _ = blobs()
    gd = GroupedDiscovery(clusterer="auto", preprocessing="raw", max_clusters=5,
                          gap_references=3, random_state=0).fit(X)
    used = []
    for name, spec in list(clusterers.PATH_CLUSTERERS.items()):
        def path(*a, _name=name, _path=spec.path, **k):
            used.append(_name)
            return _path(*a, **k)
        monkeypatch.setitem(clusterers.PATH_CLUSTERERS, name, dataclasses.replace(spec, path=path))
    st = cluster_stability(gd, X, 3, random_state=0, clusterer="chosen")
    assert set(used) == {gd.method_} and st.ari.tolist() == [1.0] * 3
    with pytest.raises(ValueError, match="'same' or 'chosen'"):
        cluster_stability(gd, X, 3, clusterer="auto")
