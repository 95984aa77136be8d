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

from dataclasses import dataclass
from typing import Any, Dict, Hashable, List, Sequence

import numpy as np

__all__ = ["ClusterQuality", "cluster_quality", "purity"]


@dataclass(frozen=True)
class ClusterQuality:
    """Agreement of predicted clusters with known labels.

    ``contingency[c, l]`` counts examples of cluster ``clusters[c]`` with label ``labels[l]``.
    """

    purity: float
    per_label: Dict[Hashable, float]
    per_cluster: Dict[Hashable, float]
    majority_label: Dict[Hashable, Hashable]
    ari: float
    nmi: float
    contingency: np.ndarray
    clusters: List[Hashable]
    labels: List[Hashable]

    def to_dict(self) -> Dict[str, Any]:
        return {
            "purity": self.purity, "ari": self.ari, "nmi": self.nmi,
            "per_label": {str(k): v for k, v in self.per_label.items()},
            "per_cluster": {str(k): v for k, v in self.per_cluster.items()},
            "majority_label": {str(k): str(v) for k, v in self.majority_label.items()},
            "clusters": [str(c) for c in self.clusters], "labels": [str(l) for l in self.labels],
            "contingency": self.contingency.tolist(),
        }


def _labels(x: Sequence[Any], name: str) -> List[Any]:
    arr = list(np.asarray(x).tolist()) if not isinstance(x, list) else list(x)
    if any(v is None for v in arr):
        raise ValueError(f"{name} contain None; drop unlabelled examples first")
    return arr


def _table(true: List[Any], pred: List[Any]):
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


def purity(labels_true: Sequence[Any], labels_pred: Sequence[Any]) -> float:
    """``(1/N) sum_c max_l n(c, l)``."""
    table, _, _ = _table(_labels(labels_true, "known labels"), _labels(labels_pred, "clusters"))
    return float(table.max(1).sum() / table.sum())


def cluster_quality(labels_true: Sequence[Any], labels_pred: Sequence[Any]) -> ClusterQuality:
    """Purity (overall, per label, per cluster), ARI and NMI against the known labels."""
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
        contingency=table, clusters=clusters, labels=labels)
