"""Divisive (top-down) clustering: repeatedly bisect the largest cluster.

1. Start with every example in cluster 0.
2. Take the largest cluster that can still be split (ties: lowest label); split it in two
   with average-linkage (Euclidean) agglomerative clustering of its own members.
3. The half holding the cluster's first member keeps the label; the other half gets the
   next free label. Repeat until ``max_k`` clusters or nothing can be split (clusters of
   one example, or of identical rows).

Every intermediate partition is kept, so one run gives the labels for every ``k``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin

__all__ = ["divisive_path", "within_distance", "DivisiveClustering"]


def _bisect(X: np.ndarray) -> np.ndarray | None:
    """Boolean mask of the second half of an average-linkage split, or None if unsplittable."""
    from scipy.cluster.hierarchy import linkage, to_tree

    if X.shape[0] < 2 or np.allclose(X, X[0]):
        return None
    # the last merge joins the two clusters a cut at k = 2 leaves; its right branch is one
    right = to_tree(linkage(X, method="average", metric="euclidean")).get_right().pre_order()
    second = np.zeros(len(X), dtype=bool)
    second[right] = True
    second = second != second[0]
    return second if second.any() else None


def divisive_path(X: np.ndarray, max_k: int) -> dict[int, np.ndarray]:
    """Labels ``{k: [n]}`` for ``k = 1..K`` (``K <= max_k`` when splitting stops early)."""
    n = X.shape[0]
    labels = np.zeros(n, dtype=int)
    path = {1: labels.copy()}
    frozen: set = set()
    for k in range(2, max_k + 1):
        sizes = np.bincount(labels)
        candidates = [c for c in np.argsort(-sizes, kind="stable") if c not in frozen
                      and sizes[c] > 1]
        split = None
        for c in candidates:
            members = np.flatnonzero(labels == c)
            second = _bisect(X[members])
            if second is None:
                frozen.add(int(c))
                continue
            split = members[second]
            break
        if split is None:
            break
        labels[split] = k - 1
        path[k] = labels.copy()
    return path


def within_distance(X: np.ndarray, labels: np.ndarray) -> float:
    """Sum over clusters of the Euclidean distances of members to their centroid."""
    total = 0.0
    for c in np.unique(labels):
        block = X[labels == c]
        total += float(np.linalg.norm(block - block.mean(0), axis=1).sum())
    return total


class DivisiveClustering(ClusterMixin, BaseEstimator):
    """scikit-learn estimator for :func:`divisive_path` at a fixed ``n_clusters``."""

    def __init__(self, n_clusters: int = 2):
        self.n_clusters = n_clusters

    def fit(self, X: Any, y: Any = None) -> DivisiveClustering:
        X = np.asarray(X, dtype=np.float64)
        if not 1 <= self.n_clusters <= X.shape[0]:
            raise ValueError(f"n_clusters={self.n_clusters} needs 1..{X.shape[0]} examples")
        path = divisive_path(X, self.n_clusters)
        self.labels_ = path[max(path)]
        self.n_clusters_ = max(path)
        return self
