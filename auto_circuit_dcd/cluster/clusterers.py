"""The named clusterers, as a table of callables, and how each routes new examples.

A *path* clusterer gives labels for every ``k`` at once (so ``k`` can be chosen
afterwards) plus its own elbow curve:

- ``agglomerative``: average linkage, Euclidean (scipy), cut at ``k`` clusters; elbow =
  largest jump in merge height.
- ``divisive``: :mod:`.divisive` (bisect the largest cluster); elbow = chord elbow of
  the summed within-cluster distances.
- ``kmeans``: scikit-learn ``KMeans(n_init=10)`` per ``k``; elbow = chord elbow of the
  inertia curve.

``hdbscan`` chooses its own number of clusters and labels outliers ``-1``.

How new examples are routed (in the reduced space), by the rule that made the clusters:

- ``kmeans``: the nearest centroid (k-means' own assignment step);
- ``agglomerative`` and ``divisive``: the cluster of the nearest training row. Average
  linkage joins a point first to its nearest neighbour, so this is the cluster a new
  point would join; a cluster is not a ball around its centroid (on the embedded toy
  model's raw EAP rows, agglomerative at k = 4, the nearest centroid sends 3.1% of the
  training rows, each left out of its centroid, to another cluster; the nearest other
  training row 0.8%: ``scripts/routing_agreement.py``);
- ``hdbscan``: ``hdbscan.approximate_predict`` (``-1``: noise).

:func:`nearest_row_agreement` and :func:`centroid_agreement` measure each rule on the
training rows themselves, every row left out of what it is compared with.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from auto_circuit_dcd.cluster.divisive import divisive_path, within_distance
from auto_circuit_dcd.cluster.select_k import chord_elbow, largest_merge_gap, merge_gaps, within_ss

__all__ = ["PathClusterer", "PATH_CLUSTERERS", "AUTO_CANDIDATES", "fit_hdbscan", "cut_linkage",
           "nearest_centroid", "nearest_row", "nearest_row_agreement", "centroid_agreement"]

Path = dict[int, np.ndarray]


@dataclass(frozen=True)
class PathClusterer:
    """``path(X, max_k, seed) -> {k: labels}``; ``elbow_curve(X, path) -> {k: value}``;
    ``elbow_choice(curve, max_k) -> k``; ``at_k(X, k, seed) -> labels``: the path's labels
    at one ``k``, without the others (what a refit at a fixed ``k`` costs)."""

    path: Callable[[np.ndarray, int, int], Path]
    elbow_curve: Callable[[np.ndarray, Mapping[int, np.ndarray]], dict[int, float]]
    elbow_choice: Callable[[Mapping[int, float], int], int]
    elbow_name: str
    at_k: Callable[[np.ndarray, int, int], np.ndarray]


def cut_linkage(merges: np.ndarray, k: int) -> np.ndarray:
    """Labels of a scipy linkage cut at ``k`` clusters: the ``n - k`` first merges applied
    (the partition ``cut_tree`` gives, at a fraction of its cost), clusters numbered in
    order of their first row."""
    n = len(merges) + 1
    parent = np.arange(2 * n - 1)
    for i in range(n - max(int(k), 1)):
        a, b = int(merges[i, 0]), int(merges[i, 1])
        parent[a] = parent[b] = n + i
    root = parent.copy()
    for node in range(2 * n - 2, -1, -1):  # a parent's index is above its children's
        root[node] = root[parent[node]] if parent[node] != node else node
    first = {r: i for i, r in enumerate(dict.fromkeys(root[:n].tolist()))}
    return np.array([first[r] for r in root[:n].tolist()], dtype=int)


def _average_linkage(X: np.ndarray) -> np.ndarray:
    from scipy.cluster.hierarchy import linkage

    return linkage(X, method="average", metric="euclidean")


def _agglomerative_path(X: np.ndarray, max_k: int, seed: int) -> Path:
    n = len(X)
    if n < 2:
        return {1: np.zeros(n, dtype=int)}
    merges = _average_linkage(X)
    return {k: cut_linkage(merges, k) for k in range(1, min(max_k, n) + 1)}


def _agglomerative_at_k(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    if k >= len(X) or len(X) < 2:
        return np.arange(len(X))
    return cut_linkage(_average_linkage(X), k)


def _merge_gap_curve(X: np.ndarray, path: Mapping[int, np.ndarray]) -> dict[int, float]:
    return merge_gaps(_average_linkage(X)[:, 2], list(path))


def _kmeans_path(X: np.ndarray, max_k: int, seed: int) -> Path:
    from sklearn.cluster import KMeans

    path = {1: np.zeros(len(X), dtype=int)}
    for k in range(2, min(max_k, len(X)) + 1):
        path[k] = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(X).labels_.astype(int)
    return path


def _kmeans_at_k(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    if k == 1:
        return np.zeros(len(X), dtype=int)
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit(X).labels_.astype(int)


def _divisive(X: np.ndarray, max_k: int, seed: int) -> Path:
    return divisive_path(X, max_k)


def _divisive_at_k(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    path = divisive_path(X, k)
    return path[max(path)]


def _within_ss_curve(X: np.ndarray, path: Mapping[int, np.ndarray]) -> dict[int, float]:
    return {k: within_ss(X, labels) for k, labels in path.items()}


def _within_distance_curve(X: np.ndarray, path: Mapping[int, np.ndarray]) -> dict[int, float]:
    return {k: within_distance(X, labels) for k, labels in path.items()}


def _chord(curve: Mapping[int, float], max_k: int) -> int:
    return max(2, chord_elbow({k: v for k, v in curve.items() if k <= max_k}))


PATH_CLUSTERERS: dict[str, PathClusterer] = {
    "agglomerative": PathClusterer(_agglomerative_path, _merge_gap_curve, largest_merge_gap,
                                   "merge_gap", _agglomerative_at_k),
    "divisive": PathClusterer(_divisive, _within_distance_curve, _chord, "within_distance",
                              _divisive_at_k),
    "kmeans": PathClusterer(_kmeans_path, _within_ss_curve, _chord, "inertia", _kmeans_at_k),
}
#: what ``clusterer="auto"`` tries (HDBSCAN is left out: it may call examples noise)
AUTO_CANDIDATES = ("agglomerative", "divisive", "kmeans")


def fit_hdbscan(X: np.ndarray, min_cluster_size: int) -> Any:
    """An ``hdbscan.HDBSCAN`` fitted with prediction data (for ``approximate_predict``)."""
    import hdbscan

    size = max(2, min(int(min_cluster_size), len(X)))
    return hdbscan.HDBSCAN(min_cluster_size=size, prediction_data=True).fit(X)


def nearest_centroid(Z: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (Euclidean) of each row of ``Z``."""
    d = ((Z[:, None, :] - centroids[None, :, :]) ** 2).sum(-1)
    return d.argmin(1)


def _nearest(Z: np.ndarray, ref: np.ndarray, exclude_self: bool = False,
             block: int = 1024) -> np.ndarray:
    """Index into ``ref`` of the nearest row (Euclidean) of each row of ``Z``, in blocks."""
    ref_sq = (ref ** 2).sum(1)
    out = np.empty(len(Z), dtype=int)
    for start in range(0, len(Z), block):
        part = Z[start:start + block]
        d = ref_sq[None, :] - 2.0 * part @ ref.T
        if exclude_self:
            rows = np.arange(len(part))
            d[rows, start + rows] = np.inf
        out[start:start + block] = d.argmin(1)
    return out


def nearest_row(Z: np.ndarray, Z_train: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Label of the nearest training row (noise rows, ``-1``, are never chosen)."""
    keep = np.flatnonzero(labels >= 0)
    return labels[keep][_nearest(Z, Z_train[keep])]


def nearest_row_agreement(Z_train: np.ndarray, labels: np.ndarray) -> float:
    """Share of (non-noise) training rows whose nearest other training row is in their cluster."""
    keep = np.flatnonzero(labels >= 0)
    if keep.size < 2:
        return 1.0
    lab = labels[keep]
    return float(np.mean(lab[_nearest(Z_train[keep], Z_train[keep], exclude_self=True)] == lab))


def centroid_agreement(Z_train: np.ndarray, labels: np.ndarray) -> float:
    """Share of (non-noise) training rows nearest to their own cluster's centroid, that
    centroid taken without the row (a cluster of one example counts as a miss)."""
    keep = np.flatnonzero(labels >= 0)
    Z, lab = Z_train[keep], labels[keep]
    ks = np.unique(lab)
    if len(ks) < 2:
        return 1.0
    sums = np.stack([Z[lab == c].sum(0) for c in ks])
    counts = np.array([(lab == c).sum() for c in ks], dtype=float)
    own = np.searchsorted(ks, lab)
    d = ((Z[:, None, :] - (sums / counts[:, None])[None]) ** 2).sum(-1)
    rest = counts[own] - 1
    loo = (sums[own] - Z) / np.where(rest > 0, rest, 1)[:, None]
    d[np.arange(len(Z)), own] = np.where(rest > 0, ((Z - loo) ** 2).sum(1), np.inf)
    return float(np.mean(d.argmin(1) == own))

