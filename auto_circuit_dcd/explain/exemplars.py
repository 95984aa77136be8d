"""Exemplars: each cluster's most typical prompts and its most ambiguous ones.

In the clustering space (the rows as the clusterer saw them, ``gd.embedding_``):

1. distance of every row to every cluster centre (``gd.centroids_``), Euclidean;
2. typical: a cluster's rows nearest its own centre, nearest first;
3. ambiguous: its rows with the smallest margin, the distance to the nearest other
   centre minus the distance to the own centre (a negative margin: nearer another
   cluster's centre than its own, which clusterers that do not assign by centre allow);
4. each exemplar also carries its silhouette value (scikit-learn's
   ``silhouette_samples`` on the same space), the usual per-prompt measure of fit.

Ambiguous exemplars exclude the typical ones, so a small cluster shows each prompt once.
Noise rows (``-1``) belong to no cluster and are never exemplars.
"""

from __future__ import annotations

import math

import numpy as np

from auto_circuit_dcd.explain.inputs import FittedClusters
from auto_circuit_dcd.explain.prompts import PromptTable
from auto_circuit_dcd.explain.records import ClusterExemplars, Exemplar

__all__ = ["centre_distances", "exemplars"]


def centre_distances(fit: FittedClusters) -> np.ndarray:
    """``[n, k]``: distance of each row to each cluster's centre (``fit.clusters`` order)."""
    diff = fit.embedding[:, None, :] - fit.centroids[None, :, :]
    return np.sqrt(np.einsum("nkd,nkd->nk", diff, diff))


def _silhouettes(fit: FittedClusters) -> np.ndarray:
    from sklearn.metrics import silhouette_samples

    keep = fit.labels >= 0
    out = np.full(fit.n, math.nan)
    if len(fit.clusters) >= 2 and keep.sum() > len(fit.clusters):
        out[keep] = silhouette_samples(fit.embedding[keep], fit.labels[keep])
    return out


def exemplars(fit: FittedClusters, prompts: PromptTable, n: int = 3) -> list[ClusterExemplars]:
    """Per cluster (increasing label), its ``n`` most typical and ``n`` most ambiguous
    prompts (see the module docstring)."""
    dist = centre_distances(fit)
    sil = _silhouettes(fit)
    clusters = list(fit.clusters)
    out = []
    for j, c in enumerate(clusters):
        rows = np.flatnonzero(fit.rows(c))
        own = dist[rows, j]
        if len(clusters) > 1:
            others = np.delete(dist[rows], j, axis=1)
            nearest = np.argmin(others, axis=1)
            margin = others[np.arange(len(rows)), nearest] - own
            other_label = [clusters[k if k < j else k + 1] for k in nearest]
        else:
            margin = np.full(len(rows), math.nan)
            other_label = [None] * len(rows)

        def record(i: int) -> Exemplar:
            r = int(rows[i])
            return Exemplar(id=prompts.ids[r], cluster=c, clean=prompts.clean[r],
                            corrupt=prompts.corrupt[r], answers=prompts.answers[r],
                            wrong_answers=prompts.wrong_answers[r], distance=float(own[i]),
                            margin=float(margin[i]), other_cluster=other_label[i],
                            silhouette=float(sil[r]))

        typical = list(np.argsort(own, kind="stable")[:n])
        ambiguous: list[int] = []
        if len(clusters) > 1:
            chosen = set(typical)
            ambiguous = [i for i in np.argsort(margin, kind="stable") if i not in chosen][:n]
        out.append(ClusterExemplars(cluster=c, size=int(len(rows)),
                                    typical=[record(int(i)) for i in typical],
                                    ambiguous=[record(int(i)) for i in ambiguous]))
    return out
