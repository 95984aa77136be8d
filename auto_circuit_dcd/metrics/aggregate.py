"""Aggregates of circuits already evaluated on one test set, without more model passes.

Every function takes :class:`FaithfulnessResult` objects (each circuit's per-example
``mu`` on the whole test set) and a routing (per test example, the label of its group):

- :func:`subset`: a result restricted to some examples, f recomputed as the ratio of
  their means (NaN for no examples);
- :func:`per_group`: per group, a circuit's curve on the examples routed to that group;
- :func:`routed_cross_faithfulness`: every circuit on every group's routed examples
  (``matrix[i, j]``: circuit ``i`` on group ``j``), the routed counterpart of
  :func:`~auto_circuit_dcd.metrics.multi.cross_faithfulness`;
- :func:`random_routing`: a random equal split of the examples over some labels (the
  K-random baseline's routing).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from auto_circuit_dcd.arrays import Indices
from auto_circuit_dcd.evaluation.faithfulness import FaithfulnessResult, ratio_of_means
from auto_circuit_dcd.metrics.curves import cpr
from auto_circuit_dcd.metrics.multi import CrossFaithfulness

__all__ = ["subset", "per_group", "routed_cross_faithfulness", "random_routing"]


def subset(result: FaithfulnessResult, rows: Indices) -> FaithfulnessResult:
    """``result`` on the examples at positions ``rows`` only (f NaN when there are none)."""
    idx = np.asarray(rows, dtype=np.int64).reshape(-1)
    f = (ratio_of_means(result.mu_circuit[idx], result.mu_full[idx], result.mu_empty[idx])
         if idx.size else np.full(result.fractions.shape, np.nan))
    pick = idx.tolist()
    return dataclasses.replace(
        result, f=f, mu_circuit=result.mu_circuit[idx], mu_full=result.mu_full[idx],
        mu_empty=result.mu_empty[idx], example_ids=[result.example_ids[i] for i in pick],
        groups=None if result.groups is None else [result.groups[i] for i in pick])


def _rows_of(routing: Sequence[Hashable] | np.ndarray, n: int) -> dict[Hashable, np.ndarray]:
    routing = list(np.asarray(routing).tolist())
    if len(routing) != n:
        raise ValueError(f"routing has {len(routing)} labels for {n} test examples")
    out: dict[Hashable, list[int]] = {}
    for i, label in enumerate(routing):
        out.setdefault(label, []).append(i)
    return {k: np.asarray(v, dtype=np.int64) for k, v in out.items()}


def per_group(result: FaithfulnessResult, routing: Sequence[Hashable] | np.ndarray,
              groups: Sequence[Hashable]) -> dict[Hashable, FaithfulnessResult]:
    """``{group: result on the examples routed to it}`` for each of ``groups`` (a group
    nothing is routed to gets NaN curves)."""
    rows = _rows_of(routing, result.n_examples)
    empty = np.zeros(0, dtype=np.int64)
    return {g: subset(result, rows.get(g, empty)) for g in groups}


def routed_cross_faithfulness(results: Mapping[Hashable, FaithfulnessResult],
                              routing: Sequence[Hashable] | np.ndarray,
                              p: float) -> CrossFaithfulness:
    """Circuit of group ``i`` (the keys of ``results``) on the test examples routed to
    group ``j``: f at ``p`` in ``matrix``, the area under each curve in ``cpr_matrix``."""
    labels = list(results)
    if not labels:
        raise ValueError("no circuits to compare")
    curves = results[labels[0]].fractions.size > 1  # an area needs more than one size
    matrix = np.empty((len(labels), len(labels)))
    cpr_m = np.empty_like(matrix) if curves else None
    cells: dict[tuple, FaithfulnessResult] = {}
    for i, row in enumerate(labels):
        for j, (col, res) in enumerate(per_group(results[row], routing, labels).items()):
            cells[(row, col)] = res
            matrix[i, j] = res.at(p)
            if cpr_m is not None:
                cpr_m[i, j] = cpr(res)
    return CrossFaithfulness(matrix=matrix, row_labels=labels, col_labels=labels, p=float(p),
                             cpr_matrix=cpr_m, results=cells)


def random_routing(n: int, labels: Sequence[Hashable], seed: int) -> list[Hashable]:
    """Each of ``n`` examples to one of ``labels``, in a random split as equal as
    possible (sizes differ by at most one)."""
    if not labels:
        raise ValueError("no labels to route to")
    order = np.random.default_rng(seed).permutation(np.arange(n) % len(labels))
    return [labels[i] for i in order]
