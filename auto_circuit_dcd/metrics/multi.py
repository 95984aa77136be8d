"""Several circuits at once: multi-circuit faithfulness (oracle and routed) and
cross-faithfulness between groups.

- **Oracle**: per test example the best circuit, ``(1/N) sum_i max_j mu_i(C_j)`` in the
  numerator of the ratio of means. No routing is needed, which flatters more circuits.
- **Routed**: each test example is first assigned to one circuit (e.g. by
  ``GroupedDiscovery.predict`` on its attribution row); only that circuit's ``mu_i`` is
  used. The honest counterpart of the oracle.
- **Cross-faithfulness**: ``matrix[i, j]`` = f of the circuit of group i on the test
  examples of group j (rows: circuits, columns: test sets).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from auto_circuit_dcd.evaluation.faithfulness import (
    MIB_GRID,
    FaithfulnessResult,
    evaluate_circuits,
    ratio_of_means,
)
from auto_circuit_dcd.metrics.curves import cpr

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit.data import PromptDataLoader
    from auto_circuit.utils.patchable_model import PatchableModel

    from auto_circuit_dcd.circuits.circuit import CircuitLike

#: per test example the label of its circuit, aligned with the loader's examples, or
#: ``{example id: label}``
Routing = Sequence[Hashable] | np.ndarray | Mapping[Hashable, Hashable]

__all__ = [
    "Routing",
    "MultiCircuitResult",
    "CrossFaithfulness",
    "combine_circuits",
    "multi_circuit_faithfulness",
    "cross_faithfulness",
]


@dataclass(frozen=True)
class MultiCircuitResult:
    """Faithfulness of a set of circuits used together on one test set.

    Attributes:
        fractions: ``[n_fractions]``.
        oracle_f: ``[n_fractions]`` f with the best circuit per example.
        oracle_choice: ``[n_examples, n_fractions]`` index into ``labels`` of that circuit.
        routed_f: ``[n_fractions]`` f with each example's assigned circuit, over the
            routed examples (those routed to an ``exclude`` label left out; None if no
            routing was given; NaN if every example was left out).
        routing: ``[n_examples]`` index into ``labels`` of the assigned circuit, ``-1``
            for an example left out (or None).
        n_excluded: examples left out of ``routed_f`` (routed to an ``exclude`` label).
        labels: circuit labels, in the order of the ``circuits`` given.
        per_circuit: ``{label: FaithfulnessResult}`` of each circuit on the whole test set.
        example_ids: the rows' example ids.
    """

    fractions: np.ndarray
    oracle_f: np.ndarray
    oracle_choice: np.ndarray
    routed_f: np.ndarray | None
    routing: np.ndarray | None
    labels: list[Hashable]
    per_circuit: dict[Hashable, FaithfulnessResult]
    example_ids: list[Hashable]
    n_excluded: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (labels as strings, NaN as None)."""
        from auto_circuit_dcd.schema import jsonable

        return jsonable({
            "fractions": self.fractions, "oracle_f": self.oracle_f, "routed_f": self.routed_f,
            "labels": [str(x) for x in self.labels], "oracle_choice": self.oracle_choice,
            "routing": self.routing, "n_excluded": self.n_excluded,
            "per_circuit_f": {str(k): v.f for k, v in self.per_circuit.items()},
        })


def _routing_index(routing: Routing, labels: Sequence[Hashable], ids: Sequence[Hashable],
                   fallback: Hashable | None, exclude: Sequence[Hashable] = ()) -> np.ndarray:
    """Index into ``labels`` per example from an aligned sequence or an ``{id: label}`` map;
    ``-1`` for an example routed to an ``exclude`` label."""
    if isinstance(routing, Mapping):
        by_id = {str(k): v for k, v in routing.items()}
        missing = [i for i in ids if str(i) not in by_id]
        if missing:
            raise KeyError(f"routing has no label for example ids {missing[:5]}")
        assigned = [by_id[str(i)] for i in ids]
    else:
        assigned = list(np.asarray(routing).tolist())
        if len(assigned) != len(ids):
            raise ValueError(f"routing has {len(assigned)} labels for {len(ids)} test examples "
                             "(give one per example in the loader's order, or {id: label})")
    pos = {lab: j for j, lab in enumerate(labels)}
    pos.update({str(lab): j for j, lab in enumerate(labels) if str(lab) not in pos})
    skip = set(exclude) | {str(x) for x in exclude}
    out = []
    for a in assigned:
        if a in skip or str(a) in skip:
            out.append(-1)
            continue
        j = pos.get(a, pos.get(str(a)))
        if j is None:
            if fallback is None:
                raise ValueError(
                    f"routing label {a!r} has no circuit (circuits: {labels}); pass "
                    "fallback=<a circuit label> for unassigned examples (e.g. noise, -1)")
            j = pos[fallback]
        out.append(j)
    return np.asarray(out, dtype=np.int64)


def combine_circuits(
    results: Mapping[Hashable, FaithfulnessResult],
    routing: Routing | None = None,
    fallback: Hashable | None = None,
    exclude: Sequence[Hashable] = (),
) -> MultiCircuitResult:
    """Oracle and routed faithfulness from per-circuit results on the same test set.

    ``routing``: per test example the label of its circuit (aligned with the results'
    ``example_ids``), or ``{example_id: label}``. Examples routed to a label in
    ``exclude`` (e.g. ``-1``, HDBSCAN noise) are left out of the routed faithfulness;
    ``fallback`` is the circuit of any other label without one. Every result must come
    from the same loader.
    """
    labels = list(results)
    if not labels:
        raise ValueError("no circuits to combine")
    first = results[labels[0]]
    for lab in labels[1:]:
        r = results[lab]
        if (r.example_ids != first.example_ids or not np.array_equal(r.fractions, first.fractions)
                or not np.allclose(r.mu_full, first.mu_full)):
            raise ValueError(f"circuit {lab!r} was evaluated on a different test set or grid")
    if fallback is not None and fallback not in results:
        raise ValueError(f"fallback {fallback!r} is not a circuit label")
    mu = np.stack([results[lab].mu_circuit for lab in labels])  # [n_circ, n_ex, n_frac]
    choice = mu.argmax(0)
    oracle_mu = mu.max(0)
    oracle_f = ratio_of_means(oracle_mu, first.mu_full, first.mu_empty)
    routed_f = route = None
    n_excluded = 0
    if routing is not None:
        route = _routing_index(routing, labels, first.example_ids, fallback, exclude)
        rows = np.flatnonzero(route >= 0)
        n_excluded = int(len(route) - rows.size)
        if rows.size:
            routed_mu = mu[route[rows], rows]  # [n_routed, n_frac]
            routed_f = ratio_of_means(routed_mu, first.mu_full[rows], first.mu_empty[rows])
        else:
            routed_f = np.full(first.fractions.shape, np.nan)
    return MultiCircuitResult(
        fractions=first.fractions.copy(), oracle_f=oracle_f, oracle_choice=choice,
        routed_f=routed_f, routing=route, labels=labels, per_circuit=dict(results),
        example_ids=list(first.example_ids), n_excluded=n_excluded)


def multi_circuit_faithfulness(
    model: PatchableModel,
    dataloader: PromptDataLoader,
    circuits: Mapping[Hashable, CircuitLike],
    routing: Routing | None = None,
    edge_fractions: Sequence[float] = MIB_GRID,
    *,
    fallback: Hashable | None = None,
    ablation: str = "resample",
    metric: str = "max_diff",
    progress: bool = False,
    selection: str = "topn",
    ranking: str = "abs",
) -> MultiCircuitResult:
    """Oracle (best circuit per example) and routed (assigned circuit) faithfulness.

    ``routing`` as in :func:`combine_circuits`; without it only the oracle is computed;
    ``selection`` and ``ranking`` as in :func:`evaluate_circuits`.
    """
    results = evaluate_circuits(model, dataloader, circuits, edge_fractions,
                                ablation=ablation, metric=metric, progress=progress,
                                selection=selection, ranking=ranking)
    return combine_circuits(results, routing, fallback=fallback)


@dataclass(frozen=True)
class CrossFaithfulness:
    """``matrix[i, j]`` = f of circuit ``row_labels[i]`` on the test set ``col_labels[j]`` at ``p``.

    ``cpr_matrix`` (same orientation) is the area under each full curve when more than one
    fraction was evaluated, else None; ``results[(row, col)]`` keeps every curve.
    """

    matrix: np.ndarray
    row_labels: list[Hashable]
    col_labels: list[Hashable]
    p: float
    cpr_matrix: np.ndarray | None
    results: dict[tuple, FaithfulnessResult]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (labels as strings, NaN as None)."""
        from auto_circuit_dcd.schema import jsonable

        return jsonable({
            "p": self.p, "rows": [str(x) for x in self.row_labels],
            "cols": [str(x) for x in self.col_labels], "matrix": self.matrix,
            "cpr_matrix": self.cpr_matrix,
        })


def cross_faithfulness(
    model: PatchableModel,
    circuits: Mapping[Hashable, CircuitLike],
    dataloaders_by_group: Mapping[Hashable, PromptDataLoader],
    p: float = 0.05,
    *,
    edge_fractions: Sequence[float] | None = None,
    ablation: str = "resample",
    metric: str = "max_diff",
    progress: bool = False,
    selection: str = "topn",
    ranking: str = "abs",
) -> CrossFaithfulness:
    """Faithfulness of every circuit on every group's test set.

    Rows follow ``circuits``, columns ``dataloaders_by_group``; the diagonal (same label)
    is each circuit on its own group. ``edge_fractions`` adds full curves (and CPR);
    ``p`` is always evaluated.
    """
    if not dataloaders_by_group:
        raise ValueError("no test sets given")
    grid = [p] if edge_fractions is None else sorted(set(map(float, edge_fractions)) | {float(p)})
    rows, cols = list(circuits), list(dataloaders_by_group)
    matrix = np.empty((len(rows), len(cols)))
    cpr_m = np.empty_like(matrix) if len(grid) > 1 else None
    results: dict[tuple, FaithfulnessResult] = {}
    for j, col in enumerate(cols):
        res = evaluate_circuits(model, dataloaders_by_group[col], circuits, grid,
                                ablation=ablation, metric=metric, progress=progress,
                                selection=selection, ranking=ranking)
        for i, row in enumerate(rows):
            results[(row, col)] = res[row]
            matrix[i, j] = res[row].at(p)
            if cpr_m is not None:
                cpr_m[i, j] = cpr(res[row])
    return CrossFaithfulness(matrix=matrix, row_labels=rows, col_labels=cols, p=float(p),
                             cpr_matrix=cpr_m, results=results)
