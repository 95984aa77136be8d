"""Partition reduced rows into clusters: the k=1 test, the clusterers, the choice of k.

``partition(Z, settings, rng)`` is a pure function of the reduced rows ``Z``; it returns a
:class:`Partition` and changes nothing. ``GroupedDiscovery.fit`` calls it once per space;
the stability refits call it on resampled rows.

1. a fixed ``n_clusters``: each named clusterer of ``settings.clusterer`` (all three for
   ``"auto"``) cut at that ``k``; the labelling with the best silhouette is kept;
2. fewer than 3 rows, all rows identical, or a largest ``k`` below 2: one cluster;
3. the k=1 test (:func:`.select_k.single_cluster_test`, when ``test_single_cluster``): one
   blob gives one cluster;
4. a clusterer instance (cloned, fitted; its ``labels_``) or HDBSCAN choose ``k`` themselves;
5. a path clusterer gives labels for every ``k = 2..K``; silhouette, elbow (and the gap
   statistic for the rules that read it) each choose a ``k``, combined by ``k_rule``;
   ``"auto"`` keeps the clusterer whose labelling has the best silhouette (ties: the first
   of :data:`.clusterers.AUTO_CANDIDATES`).

One set of reference data (the gap statistic's uniform box) is drawn per call and shared by
the k=1 test and every clusterer; pairwise distances are computed once for all silhouettes.
Labels are the clusterer's own (not yet renumbered by size); ``-1`` is noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import ClusterMixin, clone

from auto_circuit_dcd.cluster.clusterers import AUTO_CANDIDATES, PATH_CLUSTERERS, fit_hdbscan
from auto_circuit_dcd.cluster.select_k import (
    GAP_RULES,
    ReferenceCurves,
    combine,
    euclidean_distances,
    gap_choice,
    gap_statistic,
    silhouette_by_k,
    single_cluster_test,
)
from auto_circuit_dcd.errors import ClusteringError

__all__ = ["PartitionSettings", "Partition", "partition", "relabel_by_size"]

_MAX_SEED = np.iinfo(np.int32).max


@dataclass(frozen=True)
class PartitionSettings:
    """The hyper-parameters of :func:`partition` (``GroupedDiscovery``'s of the same names)."""

    clusterer: str | ClusterMixin = "auto"
    n_clusters: int | None = None
    max_clusters: int = 20
    k_rule: str = "silhouette"
    gap_references: int = 20
    test_single_cluster: bool = True
    min_cluster_size: int = 5

    def names(self) -> tuple[str, ...]:
        """The path clusterers tried (``"auto"``: all of :data:`AUTO_CANDIDATES`)."""
        return AUTO_CANDIDATES if self.clusterer == "auto" else (str(self.clusterer),)


@dataclass(frozen=True)
class Partition:
    """Labels of the rows and how they were chosen.

    Attributes:
        labels: ``[n]`` cluster of each row (the clusterer's numbering; ``-1``: noise).
        method: the clusterer used (``"single"`` / ``"fixed k=1"`` for one cluster).
        silhouette: of ``labels`` (None for one cluster).
        selection: one row per (clusterer, k) tried: method, k, silhouette, elbow, gap,
            gap_se, chosen (that clusterer's k), selected (the labelling kept).
        k_choices: per clusterer, the k each criterion chose and the combined one.
        single_cluster_test: the k=1 test's result (None when it did not run).
        estimator: the fitted HDBSCAN or clusterer instance (None for path clusterers).
        alternatives: each path clusterer tried, its labels at its own chosen k (the
            candidates ``"auto"`` chose among; empty for a fixed k or one cluster).
    """

    labels: np.ndarray
    method: str
    silhouette: float | None = None
    selection: tuple[dict[str, Any], ...] = ()
    k_choices: dict[str, dict[str, Any]] = field(default_factory=dict)
    single_cluster_test: dict[str, Any] | None = None
    estimator: ClusterMixin | None = None
    alternatives: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_clusters(self) -> int:
        return len(set(self.labels.tolist()) - {-1})


def partition(Z: np.ndarray, settings: PartitionSettings, rng: np.random.RandomState,
              distances: np.ndarray | None = None,
              curves: ReferenceCurves | None = None) -> Partition:
    """Cluster the rows of ``Z`` (see the module docstring). ``distances``: their pairwise
    Euclidean distances, when already computed; ``curves``: the gap statistic's reference
    data to reuse (drawn here when needed and not given)."""
    n = len(Z)
    one = np.zeros(n, dtype=int)
    D = euclidean_distances(Z) if distances is None else distances
    if settings.n_clusters is not None:
        k = int(settings.n_clusters)
        if k == 1:
            return Partition(one, "fixed k=1")
        n_distinct = len(np.unique(Z, axis=0))
        if k > n_distinct:
            raise ClusteringError(f"n_clusters={k} but only {n_distinct} distinct rows")
        return _fixed_k(Z, D, k, settings, rng)
    n_distinct = len(np.unique(Z, axis=0))
    max_k = min(int(settings.max_clusters), n - 1, n_distinct)
    if n < 3 or n_distinct < 2 or max_k < 2:
        reason = ("fewer than 3 examples" if n < 3 else
                  "all rows identical" if n_distinct < 2 else "max k below 2")
        return Partition(one, "single", single_cluster_test={"one_cluster": True,
                                                             "reason": reason})
    test = None
    rows: list[dict[str, Any]] = []
    # k-means' seed for the k=1 test, then the reference sets: the order the test draws them in
    test_seed = int(rng.randint(_MAX_SEED)) if settings.test_single_cluster else None
    if curves is None and (settings.test_single_cluster or settings.k_rule in GAP_RULES):
        curves = ReferenceCurves(Z, int(settings.gap_references), rng)
    if settings.test_single_cluster:
        test = single_cluster_test(Z, int(settings.gap_references), rng, curves=curves,
                                   seed=test_seed)
        rows.append({"method": "single-cluster test", "k": 1, **test})
        if test["one_cluster"]:
            return Partition(one, "single", selection=tuple(rows), single_cluster_test=test)
    if not isinstance(settings.clusterer, str):
        return _own_k(Z, D, _fit_instance(Z, settings.clusterer), rows, test)
    if settings.clusterer == "hdbscan":
        return _own_k(Z, D, _fit_hdbscan(Z, settings.min_cluster_size), rows, test)
    names = settings.names()
    results = {name: choose_k(name, Z, D, max_k, settings.k_rule, rng, curves)
               for name in names}
    best = max(names, key=lambda m: (results[m][1], -names.index(m)))
    for name in names:
        rows.extend({**r, "selected": name == best and r["chosen"]} for r in results[name][2])
    return Partition(results[best][0], best, results[best][1], tuple(rows),
                     {name: results[name][3] for name in names}, test,
                     alternatives={name: results[name][0] for name in names})


def choose_k(name: str, Z: np.ndarray, D: np.ndarray, max_k: int, k_rule: str,
             rng: np.random.RandomState, curves: ReferenceCurves | None = None,
             ) -> tuple[np.ndarray, float, list[dict[str, Any]], dict[str, Any]]:
    """One path clusterer over ``k = 2..max_k``: ``(labels at the chosen k, their
    silhouette, one selection row per k, the criteria's choices)``. The gap statistic runs
    only when ``k_rule`` reads it, against ``curves`` (required then)."""
    spec = PATH_CLUSTERERS[name]
    seed = int(rng.randint(_MAX_SEED))
    path = spec.path(Z, max_k + 1, seed)
    in_range = {k: v for k, v in path.items() if k <= max_k}
    sil = silhouette_by_k(Z, {k: v for k, v in in_range.items() if k >= 2}, D)
    available = sorted(sil)
    if not available:
        return np.zeros(len(Z), dtype=int), -1.0, [], {"combined": 1, "rule": k_rule}
    curve = spec.elbow_curve(Z, in_range)
    choices = {"silhouette": max(available, key=lambda k: (sil[k], -k)),
               "elbow": spec.elbow_choice(curve, max(in_range))}
    gap: dict[str, dict[int, float]] = {"gap": {}, "se": {}}
    if k_rule in GAP_RULES:
        if curves is None:
            raise ValueError(f"k_rule={k_rule!r} reads the gap statistic: pass its curves")
        gap = gap_statistic(Z, lambda R, m: spec.path(R, m, seed), max(path), 0, rng,
                            data_path=path, curves=curves, key=name)
        choices["gap"] = gap_choice(gap["gap"], gap["se"], min_k=2)
    choices = {m: int(min(max(k, available[0]), available[-1])) for m, k in choices.items()}
    k = combine(k_rule, choices)
    rows = [{"method": name, "k": kk, "silhouette": sil.get(kk),
             spec.elbow_name: curve.get(kk), "elbow": curve.get(kk),
             "gap": gap["gap"].get(kk), "gap_se": gap["se"].get(kk),
             "chosen": kk == k} for kk in available]
    return path[k], sil[k], rows, {**choices, "combined": k, "rule": k_rule}


def _fixed_k(Z: np.ndarray, D: np.ndarray, k: int, settings: PartitionSettings,
             rng: np.random.RandomState) -> Partition:
    names = settings.names()
    scored: dict[str, tuple[np.ndarray, float]] = {}
    for name in names:
        path = PATH_CLUSTERERS[name].path(Z, k, int(rng.randint(_MAX_SEED)))
        if k not in path or len(np.unique(path[k])) != k:
            continue
        scored[name] = (path[k], silhouette_by_k(Z, {k: path[k]}, D).get(k, -1.0))
    if not scored:
        raise ClusteringError(f"could not split the data into n_clusters={k} clusters")
    best = max(scored, key=lambda m: (scored[m][1], -names.index(m)))
    rows = tuple({"method": name, "k": k, "silhouette": sil, "chosen": True,
                  "selected": name == best} for name, (_, sil) in scored.items())
    return Partition(scored[best][0], best, scored[best][1], rows)


def _fit_hdbscan(Z: np.ndarray, min_cluster_size: int,
                 ) -> tuple[str, ClusterMixin, np.ndarray]:
    est = fit_hdbscan(Z, min_cluster_size)
    labels = np.asarray(est.labels_, dtype=int)
    if (labels < 0).all():
        raise ClusteringError(
            f"HDBSCAN labelled all {len(Z)} examples noise (min_cluster_size="
            f"{min_cluster_size}): lower min_cluster_size or use another clusterer")
    return "hdbscan", est, labels


def _fit_instance(Z: np.ndarray, clusterer: ClusterMixin,
                  ) -> tuple[str, ClusterMixin, np.ndarray]:
    est = clone(clusterer).fit(Z)
    labels = np.asarray(est.labels_, dtype=int)
    if (labels < 0).all():
        raise ClusteringError(f"{type(est).__name__} labelled every example noise")
    return type(est).__name__, est, labels


def _own_k(Z: np.ndarray, D: np.ndarray, fitted: tuple[str, ClusterMixin, np.ndarray],
           rows: list[dict[str, Any]], test: dict[str, Any] | None) -> Partition:
    """A clusterer that chose its own k: one summary row."""
    name, est, labels = fitted
    k = len(set(labels.tolist()) - {-1})
    sil = silhouette_by_k(Z, {k: labels}, D).get(k)
    row = {"method": name, "k": k, "silhouette": sil, "noise": int((labels < 0).sum()),
           "chosen": True, "selected": True}
    return Partition(labels, name, sil, (*rows, row),
                     {name: {"combined": k, "rule": "clusterer's own"}}, test, est)


def relabel_by_size(labels: np.ndarray) -> tuple[np.ndarray, dict[int, int]]:
    """Labels renumbered 0.. by decreasing size (ties: first occurrence); -1 kept."""
    labels = np.asarray(labels, dtype=int)
    clusters = [c for c in dict.fromkeys(labels.tolist()) if c >= 0]
    order = sorted(clusters, key=lambda c: -int((labels == c).sum()))
    mapping = {int(c): i for i, c in enumerate(order)}
    mapping[-1] = -1
    return np.array([mapping[int(c)] for c in labels], dtype=int), mapping
