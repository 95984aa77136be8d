"""Cluster quality against known labels (task, prompt type): reported, never used to choose k.

- **purity**: ``(1/N) sum_c max_l n(c, l)``, the share of examples whose cluster's
  majority label is their own (1 = every cluster holds one label);
- **per-cluster purity**: ``max_l n(c, l) / n(c)`` and that majority label;
- **per-label purity**: ``max_c n(c, l) / n(l)``: the share of a label's examples in the
  cluster that holds most of them (1 = the label is never split);
- **ARI** and **NMI** (scikit-learn, arithmetic normalisation).

Noise (``-1``) counts as one more cluster.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Annotated

import numpy as np

from auto_circuit_dcd.schema import Record

__all__ = ["ClusterQuality", "cluster_quality", "purity"]


@dataclass(frozen=True)
class ClusterQuality(Record):
    """Clusters against the known groups of the labelled examples.

    ``contingency[c, l]`` counts examples of cluster ``clusters[c]`` with label
    ``labels[l]``; ``n_labelled`` examples were compared, ``n_unlabelled`` left out for
    want of a known label (counted by the caller that left them out). In JSON (the run
    report's ``cluster_quality``) labels and keys are text.
    """

    purity: float
    ari: float
    nmi: float
    per_label: dict[Hashable, float]
    per_cluster: dict[Hashable, float]
    majority_label: dict[Hashable, Hashable]
    clusters: list[Hashable]
    labels: list[Hashable]
    contingency: Annotated[np.ndarray, list[list[int]]]
    n_labelled: int
    n_unlabelled: int


def _labels(x: Sequence[Hashable], name: str) -> list[Hashable]:
    arr = list(np.asarray(x).tolist()) if not isinstance(x, list) else list(x)
    if any(v is None for v in arr):
        raise ValueError(f"{name} contain None; drop unlabelled examples first")
    return arr


def _table(true: list[Hashable], pred: list[Hashable]
           ) -> tuple[np.ndarray, list[Hashable], list[Hashable]]:
    if len(true) != len(pred):
        raise ValueError(f"{len(true)} known labels for {len(pred)} cluster labels")
    if not true:
        raise ValueError("no examples")
    labels = sorted(set(true), key=lambda v: (str(type(v)), v))
    clusters = sorted(set(pred), key=lambda v: (str(type(v)), v))
    li = {v: i for i, v in enumerate(labels)}
    ci = {v: i for i, v in enumerate(clusters)}
    table = np.zeros((len(clusters), len(labels)), dtype=np.int64)
    for t, p in zip(true, pred):
        table[ci[p], li[t]] += 1
    return table, clusters, labels


def purity(labels_true: Sequence[Hashable], labels_pred: Sequence[Hashable]) -> float:
    """``(1/N) sum_c max_l n(c, l)``."""
    table, _, _ = _table(_labels(labels_true, "known labels"), _labels(labels_pred, "clusters"))
    return float(table.max(1).sum() / table.sum())


def cluster_quality(labels_true: Sequence[Hashable],
                    labels_pred: Sequence[Hashable]) -> ClusterQuality:
    """Purity (overall, per label, per cluster), ARI and NMI against the known labels
    (every example labelled: drop unlabelled ones first and count them in
    ``n_unlabelled`` with ``dataclasses.replace``)."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    true = _labels(labels_true, "known labels")
    pred = _labels(labels_pred, "clusters")
    table, clusters, labels = _table(true, pred)
    per_cluster = {c: float(table[i].max() / table[i].sum()) for i, c in enumerate(clusters)}
    majority = {c: labels[int(table[i].argmax())] for i, c in enumerate(clusters)}
    per_label = {l: float(table[:, j].max() / table[:, j].sum()) for j, l in enumerate(labels)}
    t = [str(v) for v in true]
    p = [str(v) for v in pred]
    return ClusterQuality(
        purity=float(table.max(1).sum() / table.sum()), per_label=per_label,
        per_cluster=per_cluster, majority_label=majority,
        ari=float(adjusted_rand_score(t, p)), nmi=float(normalized_mutual_info_score(t, p)),
        contingency=table, clusters=clusters, labels=labels, n_labelled=len(true), n_unlabelled=0)
