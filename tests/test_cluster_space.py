"""The clustering space chosen from the data (``preprocessing="auto"``): planted structures
that only one kind of space separates must be recovered without labels; structureless data
must not be called groups; a close call between two different partitions is flagged."""

from typing import get_args

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from auto_circuit_dcd.cluster import GroupedDiscovery
from auto_circuit_dcd.cluster.discovery import ClustererName, KRule, Preprocessing, Reduction
from auto_circuit_dcd.cluster.space_search import (
    MIN_EXCESS,
    SAME_PARTITION,
    TIE_TOLERANCE,
    null_like,
    size_floor,
)


def support_groups(sizes=(40, 40), p=400, seed=0):
    """Groups differ in which 40 edges carry mass (about a quarter of each row's |score|);
    five shared edges with large random magnitudes dominate every row's norm. The edge
    sets (binary) and the order of |scores| (rank) separate the groups; the norm-dominated
    spaces (raw, l2) see the shared edges' noise."""
    rs = np.random.RandomState(seed)
    y = np.repeat(np.arange(len(sizes)), sizes)
    X = 1e-4 * rs.normal(size=(len(y), p))
    X[:, :5] = rs.uniform(0, 50, size=(len(y), 5))
    for g in range(len(sizes)):
        cols = np.arange(10 + 40 * g, 50 + 40 * g)
        X[np.ix_(y == g, cols)] = rs.uniform(0.5, 1.5, size=((y == g).sum(), 40))
    return X, y


def sign_groups(sizes=(40, 40), p=400, seed=0):
    """Groups differ only in the sign of one shared pattern: their |scores| are alike, so
    binary and rank (of |score|) cannot tell them apart; raw and l2 can."""
    rs = np.random.RandomState(seed)
    y = np.repeat(np.arange(len(sizes)), sizes)
    v = rs.uniform(1, 3, size=p) * (rs.rand(p) < 0.2)
    X = np.where(y[:, None] == 0, 1.0, -1.0) * v * rs.uniform(0.7, 1.3, size=(len(y), p))
    return X + 0.05 * rs.normal(size=X.shape), y


def crossed_groups(n=80, p=400, seed=0):
    """Two independent partitions at once: by edge set (seen by binary and rank) and by the
    sign of ten large shared edges (seen by raw and l2); both equally clear."""
    rs = np.random.RandomState(seed)
    by_support, by_sign = np.arange(n) % 2, (np.arange(n) // 2) % 2
    v = np.zeros(p)
    v[:10] = rs.uniform(20, 30, size=10)
    X = np.where(by_sign[:, None] == 0, 1.0, -1.0) * v * rs.uniform(0.9, 1.1, size=(n, p))
    X += 1e-4 * rs.normal(size=X.shape)
    for g in range(2):
        cols = np.arange(20 + 40 * g, 60 + 40 * g)
        X[np.ix_(by_support == g, cols)] = rs.uniform(0.5, 1.5, size=((by_support == g).sum(), 40))
    return X, by_support, by_sign


def _ari(X, y, **kw):
    gd = GroupedDiscovery(random_state=0, **kw).fit(X)
    return adjusted_rand_score(y, gd.labels_), gd


@pytest.mark.parametrize("seed", [0, 1])
def test_groups_only_edge_sets_separate_are_found_in_such_a_space(seed):
    X, y = support_groups(seed=seed)
    for space in ("raw", "l2"):  # the planted case: these spaces do not see the groups
        assert _ari(X, y, preprocessing=space)[0] < 0.5
    ari, gd = _ari(X, y)
    assert ari == 1.0 and gd.preprocessing_ in ("binary", "rank")
    chosen = [c for c in gd.space_selection_.candidates if c.chosen]
    assert len(chosen) == 1 and chosen[0].space == gd.preprocessing_
    assert chosen[0].admissible and chosen[0].excess >= MIN_EXCESS


@pytest.mark.parametrize("seed", [0, 1])
def test_groups_only_signs_separate_are_found_in_such_a_space(seed):
    X, y = sign_groups(seed=seed)
    for space in ("binary", "rank"):
        assert _ari(X, y, preprocessing=space)[0] < 0.5
    ari, gd = _ari(X, y)
    assert ari == 1.0 and gd.preprocessing_ in ("raw", "l2")


def test_predict_places_new_rows_in_the_chosen_space():
    X, y = support_groups(sizes=(50, 50), seed=3)
    gd = GroupedDiscovery(random_state=0).fit(X[::2])
    pred = gd.predict(X[1::2])
    assert adjusted_rand_score(y[1::2], pred) == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_an_elongated_blob_is_one_cluster(seed):
    """k-means halves an elongated Gaussian the same way on every subsample (stable), so
    stability alone would call it two groups; its null (a Gaussian of the same shape) is
    as stable, and the search answers one cluster."""
    rs = np.random.RandomState(seed)
    X = rs.normal(size=(120, 30)) * np.r_[6.0, 3.0, np.ones(28)] + 10.0
    gd = GroupedDiscovery(random_state=seed).fit(X)
    assert gd.n_clusters_ == 1 and gd.space_selection_.one_cluster
    for c in gd.space_selection_.candidates:
        assert not c.admissible
        assert c.excess is None or c.excess < MIN_EXCESS


def test_a_close_call_between_different_partitions_is_flagged():
    X, by_support, by_sign = crossed_groups()
    gd = GroupedDiscovery(random_state=0).fit(X)
    sel = gd.space_selection_
    assert gd.n_clusters_ == 2
    found = {adjusted_rand_score(by_support, gd.labels_), adjusted_rand_score(by_sign, gd.labels_)}
    assert max(found) == 1.0
    assert sel.near_tie and sel.runner_up is not None
    rival = next(c for c in sel.candidates if (c.space, c.clusterer) == sel.runner_up)
    mine = next(c for c in sel.candidates if c.chosen)
    assert {mine.space in ("raw", "l2"), rival.space in ("raw", "l2")} == {True, False}
    assert sel.margin == pytest.approx(mine.stability - rival.stability)
    assert sel.margin <= max(TIE_TOLERANCE, 2 * sel.margin_se)
    assert "ARI < 0.9" in sel.near_tie_rule and SAME_PARTITION == 0.9
    d = sel.to_dict()
    assert d["near_tie"] and d["runner_up"] == list(sel.runner_up)
    assert len(d["candidates"]) == len(sel.candidates)


def test_a_clear_choice_is_not_flagged():
    X, y = support_groups()
    sel = GroupedDiscovery(random_state=0).fit(X).space_selection_
    assert not sel.near_tie


def test_outlier_splits_are_not_admissible():
    """Three far rows split off: stable and well separated, but no group of examples."""
    rs = np.random.RandomState(0)
    X = rs.normal(size=(60, 20))
    X[:3] += 60.0
    gd = GroupedDiscovery(random_state=0).fit(X)
    for c in gd.space_selection_.candidates:
        if c.k >= 2 and c.smallest < size_floor(gd.min_cluster_size, len(X)):
            assert not c.eligible and not c.admissible and c.stability is None
    assert gd.n_clusters_ == 1 or min(gd.cluster_sizes_.values()) >= 5


def test_size_floor():
    assert size_floor(5, 160) == 5 and size_floor(5, 30) == 3 and size_floor(5, 10) == 2
    assert size_floor(5, 4) == 2


def test_null_has_the_data_mean_and_covariance():
    rs = np.random.RandomState(0)
    Z = rs.normal(size=(4000, 3)) @ np.array([[3.0, 0, 0], [1.0, 1.0, 0], [0, 0.5, 0.2]]) + 5
    Z0 = null_like(Z, np.random.RandomState(1))
    assert Z0.shape == Z.shape
    np.testing.assert_allclose(Z0.mean(0), Z.mean(0), atol=0.15)
    np.testing.assert_allclose(np.cov(Z0.T), np.cov(Z.T), rtol=0.1, atol=0.05)


def test_threads_give_the_same_fit():
    X, y = support_groups()
    one = GroupedDiscovery(random_state=0).fit(X)
    two = GroupedDiscovery(random_state=0, n_jobs=2).fit(X)
    assert one.labels_.tolist() == two.labels_.tolist()
    assert one.space_selection_ == two.space_selection_


def test_a_named_space_has_no_search_table():
    X, y = sign_groups()
    gd = GroupedDiscovery(preprocessing="l2", random_state=0).fit(X)
    assert gd.space_selection_ is None and gd.preprocessing_ == "l2"


def test_fixed_k_in_auto_skips_spaces_that_cannot_hold_it():
    """Two features: binary and rank rows take few distinct values; a fixed k above them
    is impossible there, and those spaces are left out instead of failing the fit."""
    X = np.random.RandomState(0).randn(12, 2)
    gd = GroupedDiscovery(n_clusters=6, random_state=0).fit(X)
    assert gd.n_clusters_ == 6 and gd.preprocessing_ in ("l2", "raw")


# ---------------------------------------------------------------- the contract
def test_every_parameter_has_one_declared_constraint_and_a_literal_type():
    from auto_circuit_dcd.cluster.clusterers import PATH_CLUSTERERS
    from auto_circuit_dcd.cluster.preprocess import PREPROCESSORS
    from auto_circuit_dcd.cluster.reduce import REDUCERS
    from auto_circuit_dcd.cluster.select_k import COMBINE

    assert set(GroupedDiscovery._parameter_constraints) == set(GroupedDiscovery().get_params())
    # the Literal types name exactly the tables' keys
    assert set(get_args(ClustererName)) == {"auto", "hdbscan", *PATH_CLUSTERERS}
    assert set(get_args(Preprocessing)) == {"auto", *PREPROCESSORS}
    assert set(get_args(KRule)) == set(COMBINE)
    assert set(get_args(Reduction)) == set(REDUCERS)


@pytest.mark.parametrize("name,value", [
    ("max_clusters", 1), ("max_clusters", 2.5), ("gamma", 0.0), ("gamma", 1.5),
    ("n_components", 0), ("gap_references", 1), ("test_single_cluster", "yes"),
    ("stability_resamples", 1), ("stability_fraction", 0.0), ("n_jobs", 0),
    ("random_state", "seed"), ("candidate_spaces", ()), ("candidate_spaces", ("l2", "l2")),
    ("reduction", "umap"), ("min_cluster_size", 0)])
def test_bad_values_are_refused_before_any_work_naming_the_parameter(name, value):
    gd = GroupedDiscovery(**{name: value})
    with pytest.raises(ValueError, match=rf"^{name} must be .*, got "):
        gd.check_params()


def test_fitted_attributes_are_all_set_by_fit_and_cleared_by_clone():
    from sklearn.base import clone

    X, _ = sign_groups()
    gd = GroupedDiscovery(random_state=0).fit(X)
    fitted = {k for k in vars(gd) if k.endswith("_")}
    assert fitted == {"labels_", "label_map_", "method_", "preprocessing_", "space_selection_",
                      "selection_", "k_choices_", "single_cluster_test_", "estimator_",
                      "reducer_", "n_clusters_", "cluster_sizes_", "centroids_", "embedding_",
                      "n_features_in_", "example_ids_", "routing_rule_", "train_agreement_"}
    assert not {k for k in vars(clone(gd)) if k.endswith("_")}
