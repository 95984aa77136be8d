"""The fitted clustering an explanation reads, checked against the attribution rows.

Only ``GroupedDiscovery``'s documented fitted attributes are read: ``labels_`` (one per
row, ``-1`` = noise), ``embedding_`` (the rows in the clustering space), ``centroids_``
(one centre per cluster, in increasing label order) and ``example_ids_``. Any object
with them works (another clusterer's result, a test's stand-in).

:func:`fitted_clusters` checks them against the attribution matrix before anything is
computed and returns them as one :class:`FittedClusters`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from auto_circuit_dcd.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit_dcd.attribution.matrix import AttributionMatrix

__all__ = ["DescriptionError", "FittedClusters", "fitted_clusters"]

_FITTED = ("labels_", "embedding_", "centroids_", "example_ids_")


class DescriptionError(UserError, ValueError):
    """Inputs that cannot be described together; the message says what to change."""


@dataclass(frozen=True)
class FittedClusters:
    """The clustering of the attribution rows: row ``i`` is example ``ids[i]``.

    Attributes:
        ids: example id of each row (the attribution matrix's).
        labels: ``[n]`` int cluster of each row (``-1``: noise).
        clusters: the cluster labels, increasing (noise excluded).
        embedding: ``[n, d]`` rows in the clustering space.
        centroids: ``[len(clusters), d]`` centre of each cluster, in ``clusters`` order.
    """

    ids: list[Any]
    labels: np.ndarray
    clusters: tuple[int, ...]
    embedding: np.ndarray
    centroids: np.ndarray

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    def rows(self, cluster: int) -> np.ndarray:
        """Bool ``[n]``: the rows of ``cluster``."""
        return self.labels == cluster


def fitted_clusters(A: AttributionMatrix, gd: Any) -> FittedClusters:
    """``gd``'s clustering of ``A``'s rows, checked: one label and one embedding row per
    attribution row, the same example ids, one centre per cluster."""
    missing = [a for a in _FITTED if not hasattr(gd, a)]
    if missing:
        raise DescriptionError(
            f"{type(gd).__name__} lacks the fitted attributes {missing}: fit it first "
            "(gd = GroupedDiscovery(...).fit(A)) on the same attribution matrix")
    labels = np.asarray(gd.labels_, dtype=np.int64).reshape(-1)
    embedding = np.asarray(gd.embedding_, dtype=np.float64)
    centroids = np.asarray(gd.centroids_, dtype=np.float64)
    n = A.n_examples
    if labels.shape[0] != n or embedding.ndim != 2 or embedding.shape[0] != n:
        raise DescriptionError(
            f"the clustering has {labels.shape[0]} labels and {embedding.shape[0]} embedded "
            f"rows but the attribution matrix has {n} rows: describe the matrix the "
            "clustering was fitted on")
    ids = list(gd.example_ids_)
    if ids != list(A.example_ids) and ids != list(range(n)):
        raise DescriptionError(
            "the clustering's example_ids_ differ from the attribution matrix's example_ids "
            f"(first: {ids[:3]} vs {list(A.example_ids)[:3]}): describe the matrix the "
            "clustering was fitted on")
    clusters = tuple(sorted(int(c) for c in np.unique(labels) if c >= 0))
    if not clusters:
        raise DescriptionError("every row is noise (label -1): there is no cluster to describe")
    if centroids.ndim != 2 or centroids.shape != (len(clusters), embedding.shape[1]):
        raise DescriptionError(
            f"centroids_ has shape {centroids.shape}; expected one centre per cluster "
            f"({len(clusters)}) in the {embedding.shape[1]}-dimensional clustering space")
    return FittedClusters(ids=list(A.example_ids), labels=labels, clusters=clusters,
                          embedding=embedding, centroids=centroids)
