"""Edge overlap of circuits: Jaccard of their cumulative-mass edge sets, and top-k IoU.

The ``gamma`` mass set of a score vector ``s`` is the smallest set of edges whose summed
``|s|`` reaches ``gamma`` of the total: edges are taken in decreasing ``|s|`` (ties broken
by edge index, so the set is deterministic) until the running sum reaches
``gamma * sum |s|``. A circuit is ``PruneScores``, or an ``[n_edges]`` vector in the
package's edge order (torch or numpy); both circuits of a pair must use the same form.

Low overlap alone does not show different mechanisms; cross-faithfulness is the
stronger test (:func:`auto_circuit_dcd.metrics.cross_faithfulness`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Hashable, List, Mapping, Optional

import numpy as np

__all__ = ["mass_edge_set", "top_k_edge_set", "jaccard", "edge_overlap", "top_k_iou",
           "OverlapMatrix", "overlap_matrix"]

_REL_TOL = 1e-12


def _flat(scores: Any) -> np.ndarray:
    """A float64 ``[n_edges]`` array; ``PruneScores`` flattened in sorted module order."""
    import torch

    if isinstance(scores, Mapping):
        parts = [scores[k] for k in sorted(scores)]
        return np.concatenate([np.asarray(p.detach().cpu().double() if isinstance(p, torch.Tensor)
                                          else p, dtype=np.float64).reshape(-1) for p in parts])
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().double().numpy()
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"a circuit is PruneScores or a 1-D score vector; got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("circuit scores contain NaN or inf")
    return arr


def _pair(a: Any, b: Any) -> tuple:
    if isinstance(a, Mapping) != isinstance(b, Mapping):
        raise TypeError("give both circuits as PruneScores or both as vectors")
    if isinstance(a, Mapping) and sorted(a) != sorted(b):
        raise ValueError("the two PruneScores cover different modules (different models?)")
    x, y = _flat(a), _flat(b)
    if x.shape != y.shape:
        raise ValueError(f"circuits have {x.size} and {y.size} edges")
    return x, y


def _order(mag: np.ndarray) -> np.ndarray:
    return np.lexsort((np.arange(mag.size), -mag))  # decreasing |s|, then index


def mass_edge_set(scores: Any, gamma: float = 0.99) -> np.ndarray:
    """Bool ``[n_edges]``: the smallest edge set holding ``gamma`` of the total ``|score|``.

    All-zero scores give the empty set.
    """
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"gamma must be in (0, 1]; got {gamma}")
    mag = np.abs(_flat(scores))
    total = mag.sum()
    out = np.zeros(mag.size, dtype=bool)
    if total == 0.0:
        return out
    order = _order(mag)
    cum = np.cumsum(mag[order])
    n = int(np.searchsorted(cum, gamma * total * (1 - _REL_TOL), side="left")) + 1
    out[order[:min(n, mag.size)]] = True
    return out


def top_k_edge_set(scores: Any, k: int) -> np.ndarray:
    """Bool ``[n_edges]``: the ``k`` edges of largest ``|score|`` (ties by edge index)."""
    mag = np.abs(_flat(scores))
    if not 0 <= k <= mag.size:
        raise ValueError(f"k must be in [0, {mag.size}]; got {k}")
    out = np.zeros(mag.size, dtype=bool)
    out[_order(mag)[:k]] = True
    return out


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """``|a & b| / |a | b|`` of two bool masks; NaN when both are empty."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    union = int(np.sum(a | b))
    return float("nan") if union == 0 else int(np.sum(a & b)) / union


def edge_overlap(a: Any, b: Any, gamma: float = 0.99) -> float:
    """Jaccard of the two circuits' ``gamma`` cumulative-mass edge sets."""
    x, y = _pair(a, b)
    return jaccard(mass_edge_set(x, gamma), mass_edge_set(y, gamma))


def top_k_iou(a: Any, b: Any, k: int) -> float:
    """Intersection over union of the two circuits' top-``k`` edges by ``|score|``."""
    x, y = _pair(a, b)
    return jaccard(top_k_edge_set(x, k), top_k_edge_set(y, k))


@dataclass(frozen=True)
class OverlapMatrix:
    """``matrix[i, j]`` = overlap of circuits ``labels[i]`` and ``labels[j]`` (symmetric).

    ``measure`` says which: ``"jaccard@gamma=..."`` or ``"iou@k=..."``;
    ``set_sizes[i]`` is the size of circuit i's edge set.
    """

    matrix: np.ndarray
    labels: List[Hashable]
    measure: str
    set_sizes: np.ndarray

    def to_dict(self) -> Dict[str, Any]:
        return {"labels": [str(x) for x in self.labels], "measure": self.measure,
                "matrix": [[None if np.isnan(v) else float(v) for v in r] for r in self.matrix],
                "set_sizes": self.set_sizes.tolist()}


def overlap_matrix(circuits: Mapping[Hashable, Any], gamma: float = 0.99,
                   k: Optional[int] = None) -> OverlapMatrix:
    """Pairwise overlap of a dict of circuits: gamma-mass Jaccard, or top-``k`` IoU if ``k``."""
    labels = list(circuits)
    if not labels:
        raise ValueError("no circuits given")
    kinds = {isinstance(circuits[l], Mapping) for l in labels}
    if len(kinds) > 1:
        raise TypeError("give all circuits as PruneScores or all as vectors")
    vecs = [_flat(circuits[l]) for l in labels]
    if len({v.size for v in vecs}) > 1:
        raise ValueError("circuits have different numbers of edges")
    sets = [top_k_edge_set(v, k) if k is not None else mass_edge_set(v, gamma) for v in vecs]
    n = len(labels)
    m = np.empty((n, n))
    for i in range(n):
        for j in range(i, n):
            m[i, j] = m[j, i] = jaccard(sets[i], sets[j])
    measure = f"iou@k={k}" if k is not None else f"jaccard@gamma={gamma}"
    return OverlapMatrix(matrix=m, labels=labels, measure=measure,
                         set_sizes=np.array([int(s.sum()) for s in sets]))
