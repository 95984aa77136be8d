"""scikit-learn contract, AttributionMatrix input, baselines, and bad input."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.metrics import adjusted_rand_score
from test_cluster_recovery import blobs

from auto_circuit_dcd.attribution.matrix import AttributionMatrix
from auto_circuit_dcd.circuits.circuit import Circuit
from auto_circuit_dcd.cluster import (
    GroupedDiscovery,
    k_random_circuits,
    random_circuits,
    representative_circuits,
    single_circuit,
)
from auto_circuit_dcd.model.edges import edge_layout


@pytest.fixture(scope="module")
def planted():
    return blobs(sizes=(20, 12, 6), d=30, seed=1)


@pytest.fixture(scope="module")
def planted_matrix(tiny_pm):
    """Planted blobs over the tiny model's real edges, with its layout."""
    names, layout = edge_layout(tiny_pm)
    X, y, centers = blobs(sizes=(16, 10, 6), d=len(names), seed=2)
    A = AttributionMatrix(torch.tensor(X, dtype=torch.float32), names,
                          example_ids=[f"ex{i}" for i in range(len(X))],
                          groups=[str(g) for g in y], layout=layout)
    return A, y, centers


# ----------------------------------------------------------------------- contract
def test_init_stores_params_and_clone_and_set_params():
    gd = GroupedDiscovery(clusterer="kmeans", max_clusters=7, random_state=3)
    params = gd.get_params()
    assert params["clusterer"] == "kmeans" and params["max_clusters"] == 7
    assert params["random_state"] == 3 and params["preprocessing"] == "auto"
    assert "base_algo" not in params  # circuits are built outside the estimator
    c = clone(gd)
    assert c is not gd and c.get_params() == params
    assert c.set_params(max_clusters=4) is c and c.max_clusters == 4
    assert not any(k.endswith("_") for k in vars(GroupedDiscovery()))
    with pytest.raises(TypeError):  # parameters after the first are keyword-only
        GroupedDiscovery("kmeans", 3)  # type: ignore[misc]


def test_fit_returns_self_and_same_seed_same_result(planted):
    X, _, _ = planted
    a = GroupedDiscovery(clusterer="kmeans", max_clusters=5, gap_references=5, random_state=7)
    assert a.fit(X) is a
    b = clone(a).fit(X)
    assert a.labels_.tolist() == b.labels_.tolist()
    assert a.selection_ == b.selection_
    assert a.fit_predict(X).tolist() == a.labels_.tolist()


def test_fitted_clone_is_unfitted(planted):
    X, _, _ = planted
    gd = GroupedDiscovery(max_clusters=4, gap_references=5, random_state=0).fit(X)
    assert not hasattr(clone(gd), "labels_")


# ------------------------------------------------------------- AttributionMatrix
def test_attribution_matrix_fits_without_a_model(planted_matrix, tiny_pm):
    """``fit`` takes the matrix alone; each cluster's circuit is built from ``labels_``
    outside (``cluster_circuits``; EAP: the mean of the cluster's rows)."""
    from auto_circuit_dcd.cluster import cluster_circuits

    A, y, centers = planted_matrix
    gd = GroupedDiscovery(max_clusters=5, gap_references=5, random_state=0).fit(A)
    assert adjusted_rand_score(y, gd.labels_) == 1.0
    assert gd.example_ids_ == A.example_ids
    assert not hasattr(gd, "circuits_")
    circuits = cluster_circuits(A, gd.labels_)
    assert sorted(circuits) == list(range(gd.n_clusters_)) == [0, 1, 2]
    for c, circuit in circuits.items():
        rows = np.flatnonzero(gd.labels_ == c)
        torch.testing.assert_close(circuit.scores.float(),
                                   A.scores[rows].double().mean(0).float())
        ps = circuit.to_prune_scores()
        assert set(ps) == {w.module_name for w in tiny_pm.dest_wrappers}
    new = AttributionMatrix(torch.tensor(blobs((3, 3, 3), d=A.n_edges, seed=8,
                                               centers=centers)[0], dtype=torch.float32),
                            A.edge_names)
    train_map = {int(t): int(gd.labels_[y == t][0]) for t in range(3)}
    assert gd.predict(new).tolist() == [train_map[t] for t in (0, 0, 0, 1, 1, 1, 2, 2, 2)]


# -------------------------------------------------------------------- baselines
def test_baselines(planted_matrix, tiny_pm):
    """Circuits over the matrix's edges; oracle: the means and medoids recomputed here."""
    A, y, _ = planted_matrix
    single = single_circuit(A)[0]
    assert isinstance(single, Circuit) and single.edge_names == tuple(A.edge_names)
    assert single.meta == {"label": "single", "base_algo": "eap"}
    torch.testing.assert_close(single.scores.float(), A.scores.double().mean(0).float())

    parts = k_random_circuits(A, 3, random_state=42)
    again = k_random_circuits(A, 3, random_state=42)
    assert set(parts) == {0, 1, 2}
    order = np.random.RandomState(42).permutation(A.n_examples)
    for i, part in enumerate(np.array_split(order, 3)):  # 11, 11, 10 examples
        ref = A.scores[np.sort(part)].double().mean(0).float()
        torch.testing.assert_close(parts[i].scores.float(), ref)
        torch.testing.assert_close(again[i].scores.float(), ref)
        assert parts[i].meta["label"] == f"k_random_{i}"

    X = A.to_numpy()
    rep = representative_circuits(A, y)
    for c in range(3):
        rows = np.flatnonzero(y == c)
        dists = [np.linalg.norm(X[rows] - X[r], axis=1).sum() for r in rows]
        np.testing.assert_allclose(rep[c].scores.numpy(), X[rows[int(np.argmin(dists))]])
    # plain rows take their edges from the model
    from_model = representative_circuits(X, y, model=tiny_pm)
    assert from_model[0].edge_names == rep[0].edge_names
    torch.testing.assert_close(from_model[0].scores, rep[0].scores)
    with pytest.raises(ValueError, match="no edge layout"):
        representative_circuits(X, y)

    rnd = random_circuits(A, n_circuits=2, random_state=0)
    vecs = [rnd[i].scores for i in range(2)]
    assert all(v.abs().max() <= 1 and v.min() < 0 < v.max() for v in vecs)
    assert not torch.equal(vecs[0], vecs[1])
    with pytest.raises(ValueError, match="cannot split"):
        k_random_circuits(A, A.n_examples + 1)


# -------------------------------------------------------------------- bad input
def test_nan_rows_are_an_error_naming_them(planted):
    X = planted[0].copy()
    X[[3, 7], 0] = np.nan
    with pytest.raises(ValueError, match=r"2 row\(s\) contain NaN.*\[3, 7\]"):
        GroupedDiscovery().fit(X)


def test_more_clusters_than_examples_is_an_error():
    X = np.random.RandomState(0).rand(4, 6)
    with pytest.raises(ValueError, match="only 4 examples"):
        GroupedDiscovery(n_clusters=5).fit(X)


def test_one_example_is_one_cluster():
    X = np.arange(6.0)[None]
    gd = GroupedDiscovery().fit(X)
    assert gd.labels_.tolist() == [0] and gd.n_clusters_ == 1
    assert gd.cluster_sizes_ == {0: 1}
    assert gd.single_cluster_test_["reason"] == "fewer than 3 examples"
    assert gd.predict(X).tolist() == [0]


@pytest.mark.parametrize("value", [0.0, 2.5])
def test_identical_rows_are_one_cluster(value):
    X = np.full((10, 8), value)
    gd = GroupedDiscovery().fit(X)
    assert gd.n_clusters_ == 1 and gd.single_cluster_test_["reason"] == "all rows identical"
    assert gd.labels_.tolist() == [0] * 10


def test_zero_rows_with_l2_stay_zero_and_cluster(planted):
    X, y, _ = planted
    Xz = np.vstack([X, np.zeros((5, X.shape[1]))])
    yz = np.concatenate([y, np.full(5, 3)])
    gd = GroupedDiscovery(clusterer="agglomerative", preprocessing="l2", max_clusters=6,
                          gap_references=5, random_state=0).fit(Xz)
    assert adjusted_rand_score(yz, gd.labels_) == 1.0


def test_a_cluster_of_one_example_keeps_its_own_circuit(planted):
    X, y, _ = planted
    outlier = np.full((1, X.shape[1]), 500.0)
    Xo = np.vstack([X, outlier])
    gd = GroupedDiscovery(clusterer="agglomerative", n_clusters=4, random_state=0).fit(Xo)
    single = [c for c, s in gd.cluster_sizes_.items() if s == 1]
    assert len(single) == 1 and gd.labels_[-1] == single[0]
    np.testing.assert_array_equal(np.flatnonzero(gd.labels_ == single[0]), [len(X)])


def test_hdbscan_all_noise_is_an_error():
    X = np.random.RandomState(0).uniform(size=(30, 10))
    with pytest.raises(ValueError, match="all 30 examples noise"):
        GroupedDiscovery(clusterer="hdbscan", min_cluster_size=25,
                         test_single_cluster=False).fit(X)


@pytest.mark.parametrize("spread,k1_test", [(40.0, True), (300.0, False)])
def test_hdbscan_noise_points_get_label_minus_one_and_no_circuit(planted, spread, k1_test):
    """Very far outliers stretch the k=1 test's reference box (documented): turn it off."""
    X, y, _ = planted
    far = np.random.RandomState(3).uniform(-spread, spread, size=(3, X.shape[1]))
    gd = GroupedDiscovery(clusterer="hdbscan", min_cluster_size=5, test_single_cluster=k1_test,
                          random_state=0).fit(np.vstack([X, far]))
    assert gd.labels_[-3:].tolist() == [-1, -1, -1]
    assert adjusted_rand_score(y, gd.labels_[:-3]) == 1.0
    assert -1 not in gd.cluster_sizes_ and gd.n_clusters_ == 3


def test_bad_parameters_say_what_to_change(planted):
    X = planted[0]
    with pytest.raises(ValueError, match="clusterer must be"):
        GroupedDiscovery(clusterer="spectral").fit(X)
    with pytest.raises(ValueError, match="k_rule must be"):
        GroupedDiscovery(k_rule="mean").fit(X)
    with pytest.raises(ValueError, match="preprocessing must be one of"):
        GroupedDiscovery(preprocessing="log").fit(X)
    with pytest.raises(ValueError, match="candidate_spaces must be"):
        GroupedDiscovery(candidate_spaces=("l2", "log")).fit(X)
    with pytest.raises(ValueError, match=r"stability_fraction must be in \(0, 1\)"):
        GroupedDiscovery(stability_fraction=1.0).check_params()
    with pytest.raises(TypeError, match="base_algo"):  # circuits are built outside fit
        GroupedDiscovery(base_algo="eap")  # type: ignore[call-arg]
    with pytest.raises(TypeError):  # fit takes no model
        GroupedDiscovery().fit(X, model=object())  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="n_clusters fixes k"):
        GroupedDiscovery(clusterer="hdbscan", n_clusters=2).fit(X)
    gd = GroupedDiscovery(max_clusters=3, gap_references=5, random_state=0).fit(X)
    with pytest.raises(ValueError, match="fitted on 30"):
        gd.predict(X[:, :5])


# -------------------------------------------------------------------- routing
def _chain_and_blob():
    """A long thin cluster beside a compact one: not balls around their centroids."""
    rs = np.random.RandomState(0)
    thin = np.c_[np.linspace(0, 12, 25), rs.normal(0, 0.05, 25)]
    return np.vstack([thin, rs.normal(0, 0.3, (25, 2)) + [15.5, 0]])


@pytest.mark.parametrize("clusterer", ["agglomerative", "divisive"])
def test_linkage_clusters_route_their_own_training_rows_home(clusterer):
    from auto_circuit_dcd.cluster.clusterers import nearest_centroid

    X = _chain_and_blob()
    gd = GroupedDiscovery(clusterer=clusterer, n_clusters=2, reduction="none",
                          preprocessing="raw", random_state=0).fit(X)
    assert gd.routing_rule_ == "nearest training row"
    assert gd.predict(X).tolist() == gd.labels_.tolist()
    assert gd.train_agreement_ == 1.0  # each row's nearest other row shares its cluster
    # the nearest centroid (the rule before) sends some of these training rows elsewhere
    kept = np.asarray(sorted(gd.cluster_sizes_))
    assert (kept[nearest_centroid(gd.embedding_, gd.centroids_)] != gd.labels_).sum() >= 1


def test_kmeans_routes_to_the_nearest_centroid(planted):
    X, y, _ = planted
    gd = GroupedDiscovery(clusterer="kmeans", n_clusters=3, random_state=0).fit(X)
    assert gd.routing_rule_ == "nearest centroid"
    assert gd.predict(X).tolist() == gd.labels_.tolist()  # k-means' own fixed point


def test_train_agreement_of_each_rule_by_hand():
    from auto_circuit_dcd.cluster.clusterers import centroid_agreement, nearest_row_agreement

    Z = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    lab = np.array([0, 0, 1, 1, 1])
    # nearest other row: 0->1, 1->0 (tie with 2, first taken), 2->1 (miss), 10->11, 11->10
    assert nearest_row_agreement(Z, lab) == pytest.approx(4 / 5)
    # leave-one-out centroids: row 2 sees its cluster's centroid (10+11)/2 at 8.5 and
    # cluster 0's at 1.5: a miss; rows 0, 1, 10, 11 are nearer their own: 4 of 5
    assert centroid_agreement(Z, lab) == pytest.approx(4 / 5)
    noisy = np.array([0, 0, -1, 1, 1])  # noise rows neither judged nor chosen
    assert nearest_row_agreement(Z, noisy) == 1.0


def test_n_clusters_equal_to_the_number_of_examples_and_zero():
    X = np.random.RandomState(0).randn(6, 5)
    gd = GroupedDiscovery(n_clusters=6, random_state=0).fit(X)
    assert gd.n_clusters_ == 6 and sorted(gd.labels_.tolist()) == list(range(6))
    with pytest.raises(ValueError, match="n_clusters must be at least 1"):
        GroupedDiscovery(n_clusters=0).fit(X)
    with pytest.raises(ValueError, match="n_clusters must be at least 1"):
        GroupedDiscovery(n_clusters=0).check_params()  # found before any data is seen
