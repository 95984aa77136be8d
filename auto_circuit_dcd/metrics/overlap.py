"""Edge overlap of circuits: Jaccard of their cumulative-mass edge sets, and top-k IoU.

A circuit here is a :class:`~auto_circuit_dcd.circuits.circuit.Circuit` (its scores on its own
edges, 0 elsewhere), an ``[n_edges]`` score vector in the package's edge order (torch or
numpy), or auto-circuit ``PruneScores`` with ``model=`` (the ``PatchableModel`` they score):
those are converted with ``Circuit.from_prune_scores(ps, model)``, so that every edge set is
taken in one edge order.
The edge sets are the package's selection rules (:mod:`auto_circuit_dcd.circuits.selection`):

- the ``gamma`` mass set: the smallest set of edges whose summed ``|s|`` reaches ``gamma``
  of the total (edges in decreasing ``|s|``, ties by edge index);
- the top-``k`` set: the ``k`` edges of largest ``|s|``, edges tied with the ``k``-th kept,
  the same set the faithfulness evaluation uses at ``k`` edges.

Low overlap alone does not show different mechanisms; cross-faithfulness is the
stronger test (:func:`auto_circuit_dcd.metrics.cross_faithfulness`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from auto_circuit_dcd.circuits.selection import mass_mask, top_mask

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit.utils.patchable_model import PatchableModel

__all__ = ["jaccard", "edge_overlap", "top_k_iou", "OverlapMatrix", "overlap_matrix"]


def _as_circuit(circuit: Any, model: PatchableModel | None) -> Any:
    """``circuit`` itself, or auto-circuit ``PruneScores`` (a dict of tensors) as a
    ``Circuit`` of ``model``'s edges."""
    if not isinstance(circuit, Mapping):
        return circuit
    from auto_circuit_dcd.circuits.circuit import Circuit

    if model is None:
        raise TypeError("auto-circuit PruneScores need the model they score: pass "
                        "model=<the PatchableModel> (they are read with "
                        "dcd.Circuit.from_prune_scores(ps, model)), or give dcd.Circuit "
                        "objects or [n_edges] vectors in the package's edge order")
    return Circuit.from_prune_scores(circuit, model)


def _scores(circuit: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """A circuit's float64 ``[n_edges]`` scores (0 outside its edges) and its edge mask
    (``None`` for a plain vector: every edge is a candidate)."""
    from auto_circuit_dcd.circuits.circuit import Circuit

    if isinstance(circuit, Circuit):
        return circuit.masked_scores().numpy(), circuit.mask.numpy()
    if hasattr(circuit, "detach"):
        circuit = circuit.detach().cpu().double().numpy()
    arr = np.asarray(circuit, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"a circuit is a Circuit or a 1-D score vector; got shape {arr.shape}")
    return arr, None


def _edge_sets(circuits: Sequence[Any], *, gamma: float = 0.99, k: int | None = None,
               model: PatchableModel | None = None) -> list[np.ndarray]:
    """Each circuit's top-``k`` set (if ``k``) or ``gamma`` mass set, over the same edges."""
    from auto_circuit_dcd.circuits.circuit import Circuit

    circuits = [_as_circuit(c, model) for c in circuits]
    named = [c.edge_names for c in circuits if isinstance(c, Circuit)]
    if any(names != named[0] for names in named[1:]):
        raise ValueError("the circuits have different edge names (different models?)")
    pairs = [_scores(c) for c in circuits]
    if len({s.size for s, _ in pairs}) > 1:
        raise ValueError(f"circuits have different numbers of edges: {[s.size for s, _ in pairs]}")
    if k is None:
        return [mass_mask(s, gamma) for s, _ in pairs]
    return [top_mask(s, k, candidates=m) for s, m in pairs]


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """``|a & b| / |a | b|`` of two bool masks; NaN when both are empty."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    union = int(np.sum(a | b))
    return float("nan") if union == 0 else int(np.sum(a & b)) / union


def edge_overlap(a: Any, b: Any, gamma: float = 0.99, *,
                 model: PatchableModel | None = None) -> float:
    """Jaccard of the two circuits' ``gamma`` cumulative-mass edge sets; ``model`` (the
    ``PatchableModel``) is needed for auto-circuit ``PruneScores``."""
    return jaccard(*_edge_sets([a, b], gamma=gamma, model=model))


def top_k_iou(a: Any, b: Any, k: int, *, model: PatchableModel | None = None) -> float:
    """Intersection over union of the two circuits' top-``k`` edges by ``|score|``;
    ``model`` (the ``PatchableModel``) is needed for auto-circuit ``PruneScores``."""
    return jaccard(*_edge_sets([a, b], k=k, model=model))


@dataclass(frozen=True)
class OverlapMatrix:
    """``matrix[i, j]`` = overlap of circuits ``labels[i]`` and ``labels[j]`` (symmetric).

    ``measure`` says which: ``"jaccard@gamma=..."`` or ``"iou@k=..."``;
    ``set_sizes[i]`` is the size of circuit i's edge set.
    """

    matrix: np.ndarray
    labels: list[Hashable]
    measure: str
    set_sizes: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        from auto_circuit_dcd.schema import jsonable

        return jsonable({"labels": [str(x) for x in self.labels], "measure": self.measure,
                         "matrix": self.matrix, "set_sizes": self.set_sizes})


def overlap_matrix(circuits: Mapping[Hashable, Any], gamma: float = 0.99,
                   k: int | None = None, *,
                   model: PatchableModel | None = None) -> OverlapMatrix:
    """Pairwise overlap of a dict of circuits: gamma-mass Jaccard, or top-``k`` IoU if ``k``;
    ``model`` (the ``PatchableModel``) is needed for auto-circuit ``PruneScores``."""
    labels = list(circuits)
    if not labels:
        raise ValueError("no circuits given")
    sets = _edge_sets([circuits[lab] for lab in labels], gamma=gamma, k=k, model=model)
    n = len(labels)
    m = np.empty((n, n))
    for i in range(n):
        for j in range(i, n):
            m[i, j] = m[j, i] = jaccard(sets[i], sets[j])
    measure = f"iou@k={k}" if k is not None else f"jaccard@gamma={gamma}"
    return OverlapMatrix(matrix=m, labels=labels, measure=measure,
                         set_sizes=np.array([int(s.sum()) for s in sets]))
