"""``GroupedDiscovery``: cluster examples by their attribution rows (scikit-learn estimator).

``fit(A)`` needs no model and builds no circuits (one circuit per cluster is built from
``labels_`` outside, e.g. by :mod:`.circuits`):

1. check the parameters (:data:`GroupedDiscovery._parameter_constraints`) and the rows
   (2-D, finite; NaN rows are an error that says how to drop them);
2. place the rows in a clustering space: ``preprocessing="auto"`` tries every candidate space
   and chooses one from the data (:mod:`.space_search`: subsample stability, labels never
   read); a named preprocessing uses that space alone (:mod:`.spaces`: row preprocessing,
   then the reduction to ``n_components``);
3. partition the reduced rows (:mod:`.partition`): unless ``n_clusters`` is fixed, the k=1
   test (:func:`.select_k.single_cluster_test`: structureless data, one blob, give one
   cluster); then for a path clusterer, labels for every ``k = 2..K``
   (``K = min(max_clusters, n - 1, distinct rows)``), ``k`` chosen by silhouette, elbow and
   gap statistic combined by ``k_rule``; ``"auto"`` does this for agglomerative, divisive
   and k-means and keeps the one with the best silhouette; HDBSCAN and scikit-learn
   clusterer instances choose ``k`` themselves;
4. relabel clusters by size (0 = largest; ties by first example), noise stays ``-1``, and
   set every fitted attribute.

The k=1 test compares with uniform data in the box spanned by the rows: a few examples
far from all others stretch that box and can make clustered data look like one blob;
pass ``test_single_cluster=False`` (and e.g. ``clusterer="hdbscan"``, which calls such
examples noise) when the data have such outliers.

Documented edge cases: fewer than 3 examples, all rows identical, or ``K < 2`` give one
cluster; a fixed ``n_clusters`` above the number of examples is an error; a cluster of
one example is kept; HDBSCAN labelling every example noise is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, get_args

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.utils import check_random_state

from auto_circuit_dcd.cluster.circuits import Rows, as_rows
from auto_circuit_dcd.cluster.clusterers import (
    centroid_agreement,
    nearest_centroid,
    nearest_row,
    nearest_row_agreement,
)
from auto_circuit_dcd.cluster.options import ClustererName, KRule, Preprocessing, Reduction
from auto_circuit_dcd.cluster.partition import PartitionSettings, partition, relabel_by_size
from auto_circuit_dcd.cluster.preprocess import PREPROCESSORS, preprocess
from auto_circuit_dcd.cluster.space_search import DEFAULT_SPACES, search_spaces
from auto_circuit_dcd.cluster.spaces import embed
from auto_circuit_dcd.errors import ClusteringError

__all__ = ["GroupedDiscovery", "CLUSTERER_NAMES", "PREPROCESSING_NAMES", "ROUTES", "Route",
           "ClustererName", "Preprocessing", "KRule", "Reduction"]


#: the clusterer names ``GroupedDiscovery`` takes
CLUSTERER_NAMES: tuple[str, ...] = get_args(ClustererName)
#: the ``preprocessing`` values: ``"auto"`` and every space of :data:`.preprocess.PREPROCESSORS`
PREPROCESSING_NAMES: tuple[str, ...] = get_args(Preprocessing)
_MAX_SEED = np.iinfo(np.int32).max


@dataclass(frozen=True)
class Allowed:
    """The values a parameter may take: a test, and the words an error gives for them."""

    test: Callable[[Any], bool]
    says: str


def _one_of(options: Sequence[str]) -> Allowed:
    return Allowed(lambda v: isinstance(v, str) and v in options, f"one of {list(options)}")


def _int(lo: int, none: str = "") -> Allowed:
    def test(v: Any) -> bool:
        if v is None:
            return bool(none)
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and bool(v >= lo)
    return Allowed(test, f"at least {lo} (an integer" + (f"; or None {none})" if none else ")"))


def _share(closed: bool) -> Allowed:
    def test(v: Any) -> bool:
        number = isinstance(v, (float, int, np.floating)) and not isinstance(v, bool)
        return number and 0.0 < v and (v <= 1.0 if closed else v < 1.0)
    return Allowed(test, "in (0, 1]" if closed else "in (0, 1)")


def _spaces(v: Any) -> bool:
    return isinstance(v, (tuple, list)) and len(v) >= 1 and len(set(v)) == len(v) and \
        all(isinstance(s, str) and s in PREPROCESSORS for s in v)


def _random_state(v: Any) -> bool:
    return v is None or isinstance(v, (int, np.integer, np.random.RandomState)) and \
        not isinstance(v, bool)


class GroupedDiscovery(ClusterMixin, BaseEstimator):
    """Data-driven circuit discovery's grouping: cluster examples by their attribution rows.

    Args:
        clusterer: ``"auto"``, ``"agglomerative"``, ``"divisive"``, ``"kmeans"``,
            ``"hdbscan"``, or any scikit-learn clusterer instance (cloned, fitted on the
            reduced rows; its ``labels_`` are used, ``-1`` = noise).
        n_clusters: fix ``k`` (path clusterers only); ``None`` chooses it.
        max_clusters: largest ``k`` tried.
        k_rule: how silhouette / elbow / gap choices combine (``"silhouette"``,
            ``"largest"``, ``"smallest"``, ``"median"``, ``"elbow"``, ``"gap"``). The
            method's release takes the largest of the three; the default here is the
            silhouette's choice, because the gap statistic keeps rising with k on
            attribution rows and "largest" then splits one mechanism over several
            clusters (embedded toy model, EAP: "largest" k=4, ARI 0.895; "silhouette"
            k=2, ARI 0.984). The gap statistic is computed only for the rules that read it.
        preprocessing: the clustering space: ``"auto"`` (chosen from the data among
            ``candidate_spaces``, see :mod:`.space_search`), or ``"raw"``, ``"absolute"``,
            ``"l2"``, ``"sparse"``, ``"binary"``, ``"rank"`` (:mod:`.preprocess`).
        candidate_spaces: the spaces ``"auto"`` tries (ties keep the first).
        gamma: cumulative |score| mass kept by ``"sparse"`` / ``"binary"``.
        reduction: ``"svd"`` (truncated SVD), ``"pca"`` or ``"none"``.
        n_components: components kept (fewer when the data have fewer examples/features).
        gap_references: uniform reference sets ``B`` of the gap statistic and the k=1 test.
        test_single_cluster: run the k=1 test before clustering.
        min_cluster_size: HDBSCAN's smallest cluster, and the smallest cluster of a
            candidate ``"auto"`` accepts.
        stability_resamples: subsamples each candidate of ``"auto"`` is refitted on.
        stability_fraction: share of the rows in each of those subsamples.
        n_jobs: threads for the candidate spaces of ``"auto"`` (None: one).
        random_state: seed / ``RandomState`` for reduction, k-means, reference sets and
            subsamples.

    Fitted attributes: ``labels_``, ``n_clusters_``, ``cluster_sizes_``, ``method_`` (the
    clusterer used), ``preprocessing_`` (the space used), ``space_selection_``
    (:class:`.space_search.SpaceSelection`, the candidates and the criterion; None for a
    named preprocessing), ``selection_`` (list of dicts, one per clusterer and k in the
    space used: method, k, silhouette, elbow, gap, gap_se, chosen, selected; first the
    k=1 test's row when it ran), ``k_choices_``, ``single_cluster_test_``, ``reducer_``,
    ``centroids_`` (reduced space), ``embedding_`` (reduced training rows),
    ``estimator_`` (the fitted HDBSCAN or clusterer instance, else None),
    ``label_map_`` (the clusterer's labels -> ours), ``example_ids_``,
    ``n_features_in_``, ``routing_rule_`` (how ``predict`` routes: a key of
    :data:`ROUTES`) and ``train_agreement_`` (the share of training rows that rule sends
    to their own cluster, each row left out of what it is compared with).
    """

    #: every parameter's allowed values, checked by :meth:`check_params` and ``fit``
    _parameter_constraints: dict[str, Allowed] = {
        "clusterer": Allowed(lambda v: v in CLUSTERER_NAMES if isinstance(v, str)
                             else hasattr(v, "fit"),
                             f"one of {list(CLUSTERER_NAMES)} or a scikit-learn clusterer "
                             "instance"),
        "n_clusters": _int(1, none="to choose k"),
        "max_clusters": _int(2),
        "k_rule": _one_of(get_args(KRule)),
        "preprocessing": _one_of(PREPROCESSING_NAMES),
        "candidate_spaces": Allowed(_spaces, f"a non-empty tuple of distinct names from "
                                    f"{list(PREPROCESSORS)}"),
        "gamma": _share(closed=True),
        "reduction": _one_of(get_args(Reduction)),
        "n_components": _int(1),
        "gap_references": _int(2),
        "test_single_cluster": Allowed(lambda v: isinstance(v, (bool, np.bool_)), "True or False"),
        "min_cluster_size": _int(1),
        "stability_resamples": _int(2),
        "stability_fraction": _share(closed=False),
        "n_jobs": Allowed(lambda v: v is None or isinstance(v, int) and not isinstance(v, bool)
                          and v != 0, "None, -1 (every space at once) or a positive integer"),
        "random_state": Allowed(_random_state, "None, an integer or a numpy RandomState"),
    }

    def __init__(
        self,
        clusterer: ClustererName | ClusterMixin = "auto",
        *,
        n_clusters: int | None = None,
        max_clusters: int = 20,
        k_rule: KRule = "silhouette",
        preprocessing: Preprocessing = "auto",
        candidate_spaces: tuple[str, ...] = DEFAULT_SPACES,
        gamma: float = 0.99,
        reduction: Reduction = "svd",
        n_components: int = 20,
        gap_references: int = 20,
        test_single_cluster: bool = True,
        min_cluster_size: int = 5,
        stability_resamples: int = 5,
        stability_fraction: float = 0.8,
        n_jobs: int | None = None,
        random_state: None | int | np.random.RandomState = None,
    ):
        self.clusterer = clusterer
        self.n_clusters = n_clusters
        self.max_clusters = max_clusters
        self.k_rule = k_rule
        self.preprocessing = preprocessing
        self.candidate_spaces = candidate_spaces
        self.gamma = gamma
        self.reduction = reduction
        self.n_components = n_components
        self.gap_references = gap_references
        self.test_single_cluster = test_single_cluster
        self.min_cluster_size = min_cluster_size
        self.stability_resamples = stability_resamples
        self.stability_fraction = stability_fraction
        self.n_jobs = n_jobs
        self.random_state = random_state

    # ------------------------------------------------------------------ fit
    def fit(self, A: Rows, y: object = None) -> GroupedDiscovery:
        """Cluster the rows of ``A`` (AttributionMatrix or ``[n, f]`` array); ``y`` is
        ignored. Returns self."""
        X, matrix = as_rows(A)
        self.check_params()
        if self.n_clusters is not None and int(self.n_clusters) > len(X):
            raise ClusteringError(
                f"n_clusters={self.n_clusters} but there are only {len(X)} examples: "
                "ask for at most as many clusters as examples")
        rng = check_random_state(self.random_state)
        settings = self.partition_settings()
        if self.preprocessing == "auto":
            table, space, part = search_spaces(
                X, tuple(self.candidate_spaces), settings, gamma=float(self.gamma),
                reduction=self.reduction, n_components=int(self.n_components),
                n_resamples=int(self.stability_resamples),
                fraction=float(self.stability_fraction), rng=rng, n_jobs=self.n_jobs)
        else:
            table = None
            space = embed(X, self.preprocessing, gamma=float(self.gamma),
                          reduction=self.reduction, n_components=int(self.n_components),
                          seed=int(rng.randint(_MAX_SEED)))
            part = partition(space.points, settings, rng, distances=space.distances)
        labels, label_map = relabel_by_size(part.labels)
        kept = sorted(c for c in set(labels.tolist()) if c >= 0)
        Z = space.points

        self.labels_ = labels
        self.label_map_ = label_map
        self.method_ = part.method
        self.preprocessing_ = space.space
        self.space_selection_ = table
        self.selection_ = [dict(r) for r in part.selection]
        self.k_choices_ = dict(part.k_choices)
        self.single_cluster_test_ = part.single_cluster_test
        self.estimator_ = part.estimator
        self.reducer_ = space.reducer
        self.n_clusters_ = len(kept)
        self.cluster_sizes_ = {c: int((labels == c).sum()) for c in kept}
        self.centroids_ = np.stack([Z[labels == c].mean(0) for c in kept])
        self.embedding_ = Z
        self.n_features_in_ = X.shape[1]
        self.example_ids_ = list(matrix.example_ids) if matrix is not None else list(range(len(X)))
        self.routing_rule_ = _routing_rule(part.method, part.estimator, len(kept))
        self.train_agreement_ = ROUTES[self.routing_rule_].train_agreement(self)
        return self

    def check_params(self) -> GroupedDiscovery:
        """Check the hyper-parameters alone (``fit`` does it too); returns self.

        Lets a caller refuse a bad setting before computing the attribution rows.
        """
        for name, allowed in self._parameter_constraints.items():
            value = getattr(self, name)
            if not allowed.test(value):
                raise ValueError(f"{name} must be {allowed.says}, got {value!r}")
        if self.n_clusters is not None and (not isinstance(self.clusterer, str)
                                            or self.clusterer == "hdbscan"):
            raise ValueError("n_clusters fixes k for 'auto', 'agglomerative', 'divisive' "
                             "or 'kmeans'; HDBSCAN and clusterer instances choose their own")
        return self

    def partition_settings(self) -> PartitionSettings:
        """The parameters :func:`.partition.partition` reads, from this estimator's."""
        return PartitionSettings(
            clusterer=self.clusterer, n_clusters=self.n_clusters,
            max_clusters=int(self.max_clusters), k_rule=self.k_rule,
            gap_references=int(self.gap_references),
            test_single_cluster=bool(self.test_single_cluster),
            min_cluster_size=int(self.min_cluster_size))

    # --------------------------------------------------------------- predict
    def predict(self, A: Rows) -> np.ndarray:
        """Cluster of new examples from their attribution rows (``-1``: HDBSCAN noise).

        Rows are placed in the space the fit used (``preprocessing_``, ``reducer_``) and
        routed by the rule that made the clusters (``routing_rule_``, see :data:`ROUTES`);
        ``train_agreement_`` is the share of training rows that rule sends to their own
        cluster.
        """
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "labels_")
        X, _ = as_rows(A)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"rows have {X.shape[1]} features; fitted on {self.n_features_in_}")
        Z = self.reducer_.transform(preprocess(X, self.preprocessing_, self.gamma))
        return ROUTES[self.routing_rule_].route(self, Z)

    def _mapped(self, raw: np.ndarray) -> np.ndarray:
        return np.array([self.label_map_.get(int(c), -1) for c in raw], dtype=int)

    def _route_centroid(self, Z: np.ndarray) -> np.ndarray:
        kept = sorted(self.cluster_sizes_)
        return np.asarray(kept)[nearest_centroid(Z, self.centroids_)]

    def _route_row(self, Z: np.ndarray) -> np.ndarray:
        return nearest_row(Z, self.embedding_, self.labels_)

    def _route_hdbscan(self, Z: np.ndarray) -> np.ndarray:
        import hdbscan

        return self._mapped(hdbscan.approximate_predict(self.estimator_, Z)[0])

    def _route_estimator(self, Z: np.ndarray) -> np.ndarray:
        assert self.estimator_ is not None  # this route is chosen only for a fitted estimator
        return self._mapped(self.estimator_.predict(Z))

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
ROUTES: dict[str, Route] = {
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


def _routing_rule(method: str, estimator: ClusterMixin | None, n_clusters: int) -> str:
    """The key of :data:`ROUTES` for a fit by ``method`` (and its fitted ``estimator``)."""
    if method == "hdbscan":
        return "hdbscan"
    if estimator is not None:
        return "estimator" if hasattr(estimator, "predict") else "nearest centroid"
    if n_clusters == 1:
        return "single cluster"
    return "nearest training row" if method in _LINKAGE else "nearest centroid"

