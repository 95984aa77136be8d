"""``GroupedDiscovery``: cluster examples by their attribution rows, one circuit per cluster.

``fit(A)``:

1. check the rows (2-D, finite; NaN rows are an error that says how to drop them);
2. preprocess each row (:mod:`.preprocess`) and reduce to ``n_components``
   (:mod:`.reduce`);
3. unless ``n_clusters`` is fixed, run the k=1 test (:func:`.select_k.single_cluster_test`):
   structureless data (one blob) give one cluster, and ``single_cluster_test_`` says why;
4. otherwise cluster: for a path clusterer, labels for every ``k = 2..K``
   (``K = min(max_clusters, n - 1, distinct rows)``), ``k`` chosen by silhouette, elbow
   and gap statistic combined by ``k_rule``; ``"auto"`` does this for agglomerative,
   divisive and k-means and keeps the one with the best silhouette; HDBSCAN and
   scikit-learn clusterer instances choose ``k`` themselves;
5. relabel clusters by size (0 = largest; ties by first example), noise stays ``-1``;
6. one circuit per cluster (:mod:`.circuits`); noise examples get none.

The k=1 test compares with uniform data in the box spanned by the rows: a few examples
far from all others stretch that box and can make clustered data look like one blob;
pass ``test_single_cluster=False`` (and e.g. ``clusterer="hdbscan"``, which calls such
examples noise) when the data have such outliers.

Documented edge cases: fewer than 3 examples, all rows identical, or ``K < 2`` give one
cluster; a fixed ``n_clusters`` above the number of examples is an error; a cluster of
one example is kept (its circuit is that example's row); HDBSCAN labelling every example
noise is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, clone
from sklearn.utils import check_random_state

from auto_circuit_dcd.errors import ClusteringError
from auto_circuit_dcd.cluster.circuits import EAP_FAMILY, as_rows, resolve_base_algo, rows_circuit
from auto_circuit_dcd.cluster.clusterers import (AUTO_CANDIDATES, PATH_CLUSTERERS, centroid_agreement, fit_hdbscan,
                         nearest_centroid, nearest_row, nearest_row_agreement)
from auto_circuit_dcd.cluster.preprocess import PREPROCESSORS, preprocess
from auto_circuit_dcd.cluster.reduce import REDUCERS, Identity, make_reducer
from auto_circuit_dcd.cluster.select_k import (COMBINE, combine, gap_choice, gap_statistic, silhouette_by_k,
                       single_cluster_test)

__all__ = ["GroupedDiscovery", "CLUSTERER_NAMES", "ROUTES", "Route"]

_MAX_SEED = np.iinfo(np.int32).max
#: the clusterer names ``GroupedDiscovery`` takes
CLUSTERER_NAMES = ("auto", *PATH_CLUSTERERS, "hdbscan")


class GroupedDiscovery(ClusterMixin, BaseEstimator):
    """Data-driven circuit discovery: cluster examples, find one circuit per cluster.

    Args:
        clusterer: ``"auto"``, ``"agglomerative"``, ``"divisive"``, ``"kmeans"``,
            ``"hdbscan"``, or any scikit-learn clusterer instance (cloned, fitted on the
            reduced rows; its ``labels_`` are used, ``-1`` = noise).
        base_algo: ``"eap"`` / ``"eap-ig"`` (circuit = mean of the cluster's rows), a key
            of auto-circuit's ``PRUNE_ALGO_DICT`` (e.g. ``"ACDC"``) or a ``PruneAlgo``
            (run on the cluster's examples; ``fit`` then needs ``model`` and ``dataloader``).
        n_clusters: fix ``k`` (path clusterers only); ``None`` chooses it.
        max_clusters: largest ``k`` tried.
        k_rule: how silhouette / elbow / gap choices combine (``"silhouette"``,
            ``"largest"``, ``"smallest"``, ``"median"``, ``"elbow"``, ``"gap"``). The
            method's release takes the largest of the three; the default here is the
            silhouette's choice, because the gap statistic keeps rising with k on
            attribution rows and "largest" then splits one mechanism over several
            clusters (embedded toy model, EAP: "largest" k=4, ARI 0.895; "silhouette"
            k=2, ARI 0.984).
        preprocessing: ``"raw"``, ``"absolute"``, ``"l2"``, ``"sparse"``, ``"binary"``.
        gamma: cumulative |score| mass kept by ``"sparse"`` / ``"binary"``.
        reduction: ``"svd"`` (TruncatedSVD), ``"pca"`` or ``"none"``.
        n_components: components kept (fewer when the data have fewer examples/features).
        gap_references: uniform reference sets ``B`` of the gap statistic.
        test_single_cluster: run the k=1 test before clustering.
        min_cluster_size: HDBSCAN's smallest cluster.
        base_algo_batch_size: batch size of per-cluster loaders (non-EAP base algorithms
            except ACDC, which always gets one batch per cluster).
        random_state: seed / ``RandomState`` for reduction, k-means and reference sets.

    Fitted attributes: ``labels_``, ``n_clusters_``, ``circuits_`` ({label: PruneScores,
    on the model's device when ``fit`` is given ``model``; mean vectors for plain
    arrays}), ``cluster_sizes_``, ``selection_`` (list of dicts: method, k, silhouette,
    elbow, gap, gap_se, chosen, selected), ``k_choices_``,
    ``method_`` (the clusterer used), ``single_cluster_test_``, ``reducer_``,
    ``centroids_`` (reduced space), ``embedding_`` (reduced training rows),
    ``example_ids_``, ``routing_rule_`` (how ``predict`` routes: a key of
    :data:`ROUTES`) and ``train_agreement_`` (the share of training rows that rule
    sends to their own cluster, each row left out of what it is compared with).
    """

    def __init__(
        self,
        clusterer: Any = "auto",
        base_algo: Any = "eap-ig",
        n_clusters: Optional[int] = None,
        max_clusters: int = 20,
        k_rule: str = "silhouette",
        preprocessing: str = "raw",
        gamma: float = 0.99,
        reduction: str = "svd",
        n_components: int = 20,
        gap_references: int = 20,
        test_single_cluster: bool = True,
        min_cluster_size: int = 5,
        base_algo_batch_size: Optional[int] = None,
        random_state: Any = None,
    ):
        self.clusterer = clusterer
        self.base_algo = base_algo
        self.n_clusters = n_clusters
        self.max_clusters = max_clusters
        self.k_rule = k_rule
        self.preprocessing = preprocessing
        self.gamma = gamma
        self.reduction = reduction
        self.n_components = n_components
        self.gap_references = gap_references
        self.test_single_cluster = test_single_cluster
        self.min_cluster_size = min_cluster_size
        self.base_algo_batch_size = base_algo_batch_size
        self.random_state = random_state

    # ------------------------------------------------------------------ fit
    def fit(self, A: Any, y: Any = None, *, model: Any = None,
            dataloader: Any = None) -> "GroupedDiscovery":
        """Cluster the rows of ``A`` (AttributionMatrix or ``[n, f]`` array); returns self."""
        X, matrix = as_rows(A)
        self._check_params(X, model, dataloader)
        rng = check_random_state(self.random_state)
        n = len(X)

        Xp = preprocess(X, self.preprocessing, self.gamma)
        if n >= 3 and not np.all(Xp == Xp[0]):
            self.reducer_ = make_reducer(self.reduction, self.n_components, n, X.shape[1],
                                         int(rng.randint(_MAX_SEED)))
        else:
            self.reducer_ = Identity()
        Z = self.reducer_.fit_transform(Xp)
        n_distinct = len(np.unique(Z, axis=0))
        max_k = min(int(self.max_clusters), n - 1, n_distinct)

        self.selection_: List[Dict[str, Any]] = []
        self.k_choices_: Dict[str, Dict[str, Any]] = {}
        self.single_cluster_test_: Optional[Dict[str, Any]] = None
        self._estimator = None
        labels, method = self._cluster(Z, n, n_distinct, max_k, rng)

        labels, self.label_map_ = _relabel_by_size(labels)
        self.labels_ = labels
        self.method_ = method
        kept = sorted(c for c in set(labels.tolist()) if c >= 0)
        self.n_clusters_ = len(kept)
        self.cluster_sizes_ = {c: int((labels == c).sum()) for c in kept}
        self.centroids_ = np.stack([Z[labels == c].mean(0) for c in kept])
        self.embedding_ = Z
        self.n_features_in_ = X.shape[1]
        self.example_ids_ = list(matrix.example_ids) if matrix is not None else list(range(n))
        self.routing_rule_ = self._routing_rule()
        self.train_agreement_ = ROUTES[self.routing_rule_].train_agreement(self)
        self.circuits_ = self._circuits(X, matrix, labels, kept, model, dataloader)
        return self

    def check_params(self) -> "GroupedDiscovery":
        """Check the hyper-parameters alone (``fit`` does it too); returns self.

        Lets a caller refuse a bad setting before computing the attribution rows.
        """
        named = isinstance(self.clusterer, str)
        if named and self.clusterer not in CLUSTERER_NAMES:
            raise ValueError(
                f"clusterer must be one of {list(CLUSTERER_NAMES)} or a scikit-learn "
                f"clusterer instance; got {self.clusterer!r}")
        if not named and not hasattr(self.clusterer, "fit"):
            raise TypeError(f"clusterer {self.clusterer!r} has no fit method")
        if self.k_rule not in COMBINE:
            raise ValueError(f"k_rule must be one of {sorted(COMBINE)}, got {self.k_rule!r}")
        if self.preprocessing not in PREPROCESSORS:
            raise ValueError(f"preprocessing must be one of {sorted(PREPROCESSORS)}, got "
                             f"{self.preprocessing!r}")
        if self.reduction not in REDUCERS:
            raise ValueError(f"reduction must be one of {sorted(REDUCERS)}, got "
                             f"{self.reduction!r}")
        if int(self.max_clusters) < 2:
            raise ValueError(f"max_clusters must be at least 2, got {self.max_clusters}")
        if self.n_clusters is not None:
            if not named or self.clusterer == "hdbscan":
                raise ValueError("n_clusters fixes k for 'auto', 'agglomerative', 'divisive' "
                                 "or 'kmeans'; HDBSCAN and clusterer instances choose their own")
            if int(self.n_clusters) < 1:
                raise ValueError(f"n_clusters must be at least 1 (or None to choose k), got "
                                 f"{self.n_clusters}")
        if self.base_algo not in EAP_FAMILY:
            resolve_base_algo(self.base_algo)
        return self

    def _check_params(self, X: np.ndarray, model: Any, dataloader: Any) -> None:
        self.check_params()
        if self.n_clusters is not None and int(self.n_clusters) > len(X):
            raise ClusteringError(
                f"n_clusters={self.n_clusters} but there are only {len(X)} examples: "
                "ask for at most as many clusters as examples")
        if self.base_algo not in EAP_FAMILY:
            if model is None or dataloader is None:
                raise ValueError(
                    f"base_algo={getattr(self.base_algo, 'key', self.base_algo)!r} runs on "
                    "each cluster's examples: call fit(A, model=pm, dataloader=loader)")

    # ------------------------------------------------------------ clustering
    def _cluster(self, Z: np.ndarray, n: int, n_distinct: int, max_k: int,
                 rng: np.random.RandomState) -> Tuple[np.ndarray, str]:
        one = np.zeros(n, dtype=int)
        if self.n_clusters is not None:
            k = int(self.n_clusters)
            if k == 1:
                return one, "fixed k=1"
            if k > n_distinct:
                raise ClusteringError(f"n_clusters={k} but only {n_distinct} distinct rows")
            return self._fixed_k(Z, k, rng)
        if n < 3 or n_distinct < 2 or max_k < 2:
            reason = ("fewer than 3 examples" if n < 3 else
                      "all rows identical" if n_distinct < 2 else "max k below 2")
            self.single_cluster_test_ = {"one_cluster": True, "reason": reason}
            return one, "single"
        if self.test_single_cluster:
            self.single_cluster_test_ = single_cluster_test(Z, int(self.gap_references), rng)
            self.selection_.append({"method": "single-cluster test", "k": 1,
                                    **{k: v for k, v in self.single_cluster_test_.items()}})
            if self.single_cluster_test_["one_cluster"]:
                return one, "single"
        if not isinstance(self.clusterer, str):
            return self._fit_instance(Z), type(self.clusterer).__name__
        if self.clusterer == "hdbscan":
            return self._fit_hdbscan(Z), "hdbscan"
        names = AUTO_CANDIDATES if self.clusterer == "auto" else (self.clusterer,)
        results = {name: self._select_k(name, Z, max_k, rng) for name in names}
        best = max(names, key=lambda m: (results[m][1], -names.index(m)))
        for row in self.selection_:
            row["selected"] = row.get("method") == best and row.get("chosen", False)
        return results[best][0], best

    def _select_k(self, name: str, Z: np.ndarray, max_k: int,
                  rng: np.random.RandomState) -> Tuple[np.ndarray, float]:
        """Labels at the chosen k and their silhouette; appends rows to ``selection_``."""
        spec = PATH_CLUSTERERS[name]
        seed = int(rng.randint(_MAX_SEED))
        path = spec.path(Z, max_k + 1, seed)
        in_range = {k: v for k, v in path.items() if k <= max_k}
        sil = silhouette_by_k(Z, {k: v for k, v in in_range.items() if k >= 2})
        curve = spec.elbow_curve(Z, in_range)
        gap = gap_statistic(Z, lambda R, m: spec.path(R, m, seed), max(path),
                            int(self.gap_references), rng, data_path=path)
        available = sorted(sil)
        if not available:
            return np.zeros(len(Z), dtype=int), -1.0
        choices = {
            "silhouette": max(available, key=lambda k: (sil[k], -k)),
            "elbow": spec.elbow_choice(curve, max(in_range)),
            "gap": gap_choice(gap["gap"], gap["se"], min_k=2),
        }
        choices = {m: int(min(max(k, available[0]), available[-1])) for m, k in choices.items()}
        k = combine(self.k_rule, choices)
        self.k_choices_[name] = {**choices, "combined": k, "rule": self.k_rule}
        for kk in available:
            self.selection_.append({
                "method": name, "k": kk, "silhouette": sil.get(kk),
                spec.elbow_name: curve.get(kk), "elbow": curve.get(kk),
                "gap": gap["gap"].get(kk), "gap_se": gap["se"].get(kk),
                "chosen": kk == k, "selected": False,
            })
        return path[k], sil[k]

    def _fixed_k(self, Z: np.ndarray, k: int, rng: np.random.RandomState) -> Tuple[np.ndarray, str]:
        names = AUTO_CANDIDATES if self.clusterer == "auto" else (self.clusterer,)
        scored = {}
        for name in names:
            path = PATH_CLUSTERERS[name].path(Z, k, int(rng.randint(_MAX_SEED)))
            if k not in path or len(np.unique(path[k])) != k:
                continue
            sil = silhouette_by_k(Z, {k: path[k]}).get(k, -1.0)
            scored[name] = (path[k], sil)
            self.selection_.append({"method": name, "k": k, "silhouette": sil,
                                    "chosen": True, "selected": False})
        if not scored:
            raise ClusteringError(f"could not split the data into n_clusters={k} clusters")
        best = max(scored, key=lambda m: (scored[m][1], -names.index(m)))
        for row in self.selection_:
            row["selected"] = row["method"] == best
        return scored[best][0], best

    def _fit_hdbscan(self, Z: np.ndarray) -> np.ndarray:
        est = fit_hdbscan(Z, self.min_cluster_size)
        labels = np.asarray(est.labels_, dtype=int)
        if (labels < 0).all():
            raise ClusteringError(
                f"HDBSCAN labelled all {len(Z)} examples noise (min_cluster_size="
                f"{self.min_cluster_size}): lower min_cluster_size or use another clusterer")
        self._estimator = est
        self._add_summary_row("hdbscan", Z, labels)
        return labels

    def _fit_instance(self, Z: np.ndarray) -> np.ndarray:
        est = clone(self.clusterer).fit(Z)
        labels = np.asarray(getattr(est, "labels_"), dtype=int)
        if (labels < 0).all():
            raise ClusteringError(f"{type(est).__name__} labelled every example noise")
        self._estimator = est
        self._add_summary_row(type(est).__name__, Z, labels)
        return labels

    def _add_summary_row(self, name: str, Z: np.ndarray, labels: np.ndarray) -> None:
        k = len(set(labels.tolist()) - {-1})
        sil = silhouette_by_k(Z, {k: labels}).get(k)
        self.k_choices_[name] = {"combined": k, "rule": "clusterer's own"}
        self.selection_.append({"method": name, "k": k, "silhouette": sil,
                                "noise": int((labels < 0).sum()), "chosen": True,
                                "selected": True})

    # -------------------------------------------------------------- circuits
    def _circuits(self, X: np.ndarray, matrix: Any, labels: np.ndarray, kept: List[int],
                  model: Any, dataloader: Any) -> Dict[int, Any]:
        return {c: rows_circuit(self.base_algo, X, matrix, np.flatnonzero(labels == c),
                                example_ids=self.example_ids_, model=model,
                                dataloader=dataloader, batch_size=self.base_algo_batch_size,
                                label=c) for c in kept}

    # --------------------------------------------------------------- predict
    def predict(self, A: Any) -> np.ndarray:
        """Cluster of new examples from their attribution rows (``-1``: HDBSCAN noise).

        Routed by the rule that made the clusters (``routing_rule_``, see
        :data:`ROUTES`); ``train_agreement_`` is the share of training rows that rule
        sends to their own cluster.
        """
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "labels_")
        X, _ = as_rows(A)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"rows have {X.shape[1]} features; fitted on {self.n_features_in_}")
        Z = self.reducer_.transform(preprocess(X, self.preprocessing, self.gamma))
        return ROUTES[self.routing_rule_].route(self, Z)

    def _routing_rule(self) -> str:
        if self.method_ == "hdbscan":
            return "hdbscan"
        if self._estimator is not None:
            return "estimator" if hasattr(self._estimator, "predict") else "nearest centroid"
        if self.n_clusters_ == 1:
            return "single cluster"
        return "nearest training row" if self.method_ in _LINKAGE else "nearest centroid"

    def _mapped(self, raw: np.ndarray) -> np.ndarray:
        return np.array([self.label_map_.get(int(c), -1) for c in raw], dtype=int)

    def _route_centroid(self, Z: np.ndarray) -> np.ndarray:
        kept = sorted(self.cluster_sizes_)
        return np.asarray(kept)[nearest_centroid(Z, self.centroids_)]

    def _route_row(self, Z: np.ndarray) -> np.ndarray:
        return nearest_row(Z, self.embedding_, self.labels_)

    def _route_hdbscan(self, Z: np.ndarray) -> np.ndarray:
        import hdbscan

        return self._mapped(hdbscan.approximate_predict(self._estimator, Z)[0])

    def _route_estimator(self, Z: np.ndarray) -> np.ndarray:
        return self._mapped(self._estimator.predict(Z))

    def _agreement_by_routing(self) -> float:
        """Share of non-noise training rows routed back to their own cluster."""
        keep = self.labels_ >= 0
        routed = ROUTES[self.routing_rule_].route(self, self.embedding_[keep])
        return float(np.mean(routed == self.labels_[keep]))


@dataclass(frozen=True)
class Route:
    """How new rows reach a cluster, and the share of training rows it keeps in theirs
    (each row left out of what it is compared with where the rule allows)."""

    route: Callable[[GroupedDiscovery, np.ndarray], np.ndarray]
    train_agreement: Callable[[GroupedDiscovery], float]


#: routing rule -> Route. k-means: its own assignment step; agglomerative and divisive
#: (average linkage): the nearest training row's cluster, which a new point joins first;
#: HDBSCAN: ``approximate_predict``; a clusterer instance: its ``predict``.
ROUTES: Dict[str, Route] = {
    "single cluster": Route(lambda gd, Z: np.zeros(len(Z), dtype=int), lambda gd: 1.0),
    "nearest centroid": Route(GroupedDiscovery._route_centroid,
                              lambda gd: centroid_agreement(gd.embedding_, gd.labels_)),
    "nearest training row": Route(GroupedDiscovery._route_row,
                                  lambda gd: nearest_row_agreement(gd.embedding_, gd.labels_)),
    "hdbscan": Route(GroupedDiscovery._route_hdbscan, GroupedDiscovery._agreement_by_routing),
    "estimator": Route(GroupedDiscovery._route_estimator,
                       GroupedDiscovery._agreement_by_routing),
}
_LINKAGE = ("agglomerative", "divisive")


def _relabel_by_size(labels: np.ndarray) -> Tuple[np.ndarray, Dict[int, int]]:
    """Labels renumbered 0.. by decreasing size (ties: first occurrence); -1 kept."""
    labels = np.asarray(labels, dtype=int)
    clusters = [c for c in dict.fromkeys(labels.tolist()) if c >= 0]
    order = sorted(clusters, key=lambda c: -int((labels == c).sum()))
    mapping = {int(c): i for i, c in enumerate(order)}
    mapping[-1] = -1
    return np.array([mapping[int(c)] for c in labels], dtype=int), mapping
