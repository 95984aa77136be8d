"""Which sizes a comparison may use, and whether two sides of a comparison hold as many edges.

1. :func:`size_grid`: a size ``p`` asks for ``floor(p * n_edges)`` edges
   (:func:`~auto_circuit_dcd.evaluation.faithfulness.edge_count`); one that asks for none is
   the empty circuit whatever the scores (f = 0 by construction: on an 81-edge model the
   MIB grid's four smallest sizes), so it is left out of the grid, of CPR/CMD and of every
   comparison, and the reason is stated;
2. :func:`size_note`: every comparison records the edges each side achieved at its size
   (a selection rule can keep fewer edges than asked: ``topn-prune``; or more: ties); the
   note says when they differ, or when a side is empty, so no comparison of unequal sizes
   goes unsaid. ``Circuit.top_connected`` makes them equal up to the few edges that
   complete a path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from auto_circuit_dcd.arrays import Floats
from auto_circuit_dcd.evaluation.faithfulness import edge_count

__all__ = ["SizeGrid", "size_grid", "size_note", "kept_columns"]


@dataclass
class SizeGrid:
    """The sizes kept and those left out, with the reason.

    Attributes:
        fractions: the sizes kept (ask for at least one edge), in the order given.
        requested_counts: ``floor(p * n_edges)`` of each kept size.
        dropped: the sizes left out (ask for no edge).
        n_edges: edges in the model's graph.
        reason: why sizes were left out ("" when none was).
    """

    fractions: list[float]
    requested_counts: list[int]
    dropped: list[float]
    n_edges: int
    reason: str


def size_grid(fractions: Sequence[float], n_edges: int) -> SizeGrid:
    """The sizes of ``fractions`` that ask for at least one of ``n_edges`` edges."""
    if n_edges < 1:
        raise ValueError(f"a graph of {n_edges} edges has no circuit sizes")
    kept = [float(p) for p in fractions if edge_count(float(p), n_edges) >= 1]
    dropped = [float(p) for p in fractions if edge_count(float(p), n_edges) < 1]
    reason = "" if not dropped else (
        f"{len(dropped)} size(s) ({', '.join(f'{100 * p:g}%' for p in dropped)}) ask for "
        f"fewer than one of the {n_edges} edges (floor(p * {n_edges}) = 0): the circuit is "
        "empty whatever its scores, so they are left out of the grid, of CPR/CMD and of "
        "every comparison")
    return SizeGrid(fractions=kept, requested_counts=[edge_count(p, n_edges) for p in kept],
                    dropped=dropped, n_edges=int(n_edges), reason=reason)


def size_note(edges_a: Mapping[str, int], edges_b: Mapping[str, int]) -> str:
    """"" when every circuit on both sides holds the same number of edges, else a sentence
    giving each side's counts (and naming empty circuits)."""
    counts = {int(v) for v in list(edges_a.values()) + list(edges_b.values())}
    empty = sorted(name for name, v in {**edges_a, **edges_b}.items() if int(v) == 0)
    parts = []
    if len(counts) > 1:
        parts.append("unequal sizes: " + "; ".join(
            f"{name} {int(v)}" for name, v in {**edges_a, **edges_b}.items()) + " edges")
    if empty:
        parts.append(f"empty circuit(s): {', '.join(empty)}")
    return ". ".join(parts)


def kept_columns(all_fractions: Floats, grid: SizeGrid) -> list[int]:
    """Positions in ``all_fractions`` of the grid's sizes (each must be there)."""
    allf = np.asarray(all_fractions, dtype=np.float64)
    out = []
    for p in grid.fractions:
        hits = np.flatnonzero(np.isclose(allf, p, rtol=0, atol=1e-12))
        if hits.size == 0:
            raise ValueError(f"size {p} was not evaluated (sizes: {allf.tolist()})")
        out.append(int(hits[0]))
    return out
