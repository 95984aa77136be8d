"""The named clusterers, as a table of callables, and how each routes new examples.

A *path* clusterer gives labels for every ``k`` at once (so ``k`` can be chosen
afterwards) plus its own elbow curve:

- ``agglomerative``: average linkage, Euclidean (scipy), cut at ``k`` clusters; elbow =
  largest jump in merge height.
- ``divisive``: :mod:`.divisive` (bisect the largest cluster); elbow = chord elbow of
  the summed within-cluster distances.
- ``kmeans``: scikit-learn ``KMeans(n_init=10)`` per ``k``; elbow = chord elbow of the
  inertia curve.

``hdbscan`` chooses its own number of clusters and labels outliers ``-1``; new examples
are routed with ``hdbscan.approximate_predict``. Path clusterers route a new example to
the nearest cluster centroid in the reduced space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping

import numpy as np

from .divisive import divisive_path, within_distance
from .select_k import chord_elbow, within_ss

__all__ = ["PathClusterer", "PATH_CLUSTERERS", "AUTO_CANDIDATES", "fit_hdbscan",
           "nearest_centroid"]

Path = Dict[int, np.ndarray]


@dataclass(frozen=True)
class PathClusterer:
    """``path(X, max_k, seed) -> {k: labels}``; ``elbow_curve(X, path) -> {k: value}``;
    ``elbow_choice(curve, max_k) -> k``."""

    path: Callable[[np.ndarray, int, int], Path]
    elbow_curve: Callable[[np.ndarray, Mapping[int, np.ndarray]], Dict[int, float]]
    elbow_choice: Callable[[Mapping[int, float], int], int]
    elbow_name: str


def _agglomerative_path(X: np.ndarray, max_k: int, seed: int) -> Path:
    from scipy.cluster.hierarchy import cut_tree, linkage

    ks = list(range(1, min(max_k, len(X)) + 1))
    cuts = cut_tree(linkage(X, method="average", metric="euclidean"), n_clusters=ks)
    return {k: cuts[:, i].astype(int) for i, k in enumerate(ks)}


def _merge_gaps(X: np.ndarray, path: Mapping[int, np.ndarray]) -> Dict[int, float]:
    from scipy.cluster.hierarchy import linkage

    h = np.sort(linkage(X, method="average", metric="euclidean")[:, 2])
    n = len(X)
    return {k: float(h[n - k] - h[n - k - 1]) for k in path if 2 <= k <= n - 1}


def _kmeans_path(X: np.ndarray, max_k: int, seed: int) -> Path:
    from sklearn.cluster import KMeans

    path = {1: np.zeros(len(X), dtype=int)}
    for k in range(2, min(max_k, len(X)) + 1):
        path[k] = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(X).labels_.astype(int)
    return path


def _divisive(X: np.ndarray, max_k: int, seed: int) -> Path:
    return divisive_path(X, max_k)


def _within_ss_curve(X: np.ndarray, path: Mapping[int, np.ndarray]) -> Dict[int, float]:
    return {k: within_ss(X, labels) for k, labels in path.items()}


def _within_distance_curve(X: np.ndarray, path: Mapping[int, np.ndarray]) -> Dict[int, float]:
    return {k: within_distance(X, labels) for k, labels in path.items()}


def _chord(curve: Mapping[int, float], max_k: int) -> int:
    return max(2, chord_elbow({k: v for k, v in curve.items() if k <= max_k}))


def _max_gap(curve: Mapping[int, float], max_k: int) -> int:
    ks = [k for k in curve if 2 <= k <= max_k]
    return int(max(ks, key=lambda k: (curve[k], -k))) if ks else 2


PATH_CLUSTERERS: Dict[str, PathClusterer] = {
    "agglomerative": PathClusterer(_agglomerative_path, _merge_gaps, _max_gap, "merge_gap"),
    "divisive": PathClusterer(_divisive, _within_distance_curve, _chord, "within_distance"),
    "kmeans": PathClusterer(_kmeans_path, _within_ss_curve, _chord, "inertia"),
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
