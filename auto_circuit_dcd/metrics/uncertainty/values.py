"""Per-example values of a run's circuits, and the curves built from them, as the bootstrap
needs them.

A :class:`TestValues` holds, for one edge ranking, every circuit's ``mu [n_examples,
n_sizes]`` at the grid's sizes with the examples' ``mu(full)`` and ``mu(empty)``. A
:class:`Curve` is one per-example ``mu [n_examples, n_sizes]`` on some rows:

- :meth:`TestValues.circuit`: one circuit;
- :meth:`TestValues.routed`: per example the circuit of its routing label (DCD routed,
  K-random routed; :func:`~auto_circuit_dcd.metrics.multi.combine_circuits`' rule, with its
  ``fallback`` and ``exclude``);
- :meth:`TestValues.oracle`: per example the best of several circuits (DCD and K-random
  oracle).

Every one is a per-example quantity, so its faithfulness on a resample is the ratio of the
resample's sums (:func:`~.bootstrap.ratio_replicates`). :func:`curve_replicates` stacks
curves (columns curve-major: curve ``c`` at size ``s`` is column ``c * n_sizes + s``);
:func:`difference_replicates` gives ``f(a) - f(b)`` of paired curves on the same rows
(numerator ``mu(a) - mu(b)``, the shared denominator). :func:`area_weights` turns a curve
into CPR and CMD: both are trapezoid areas, linear in the integrand, so the weights are
the package's own :func:`~auto_circuit_dcd.metrics.curves.cpr` of unit curves, and CMD
integrates :data:`~auto_circuit_dcd.metrics.curves.CMD_FORMS` of the curve with them.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from auto_circuit_dcd.arrays import Floats
from auto_circuit_dcd.evaluation.faithfulness import FaithfulnessResult
from auto_circuit_dcd.metrics.curves import CMD_FORMS, check_cmd_form, cpr
from auto_circuit_dcd.metrics.uncertainty.bootstrap import Replicates, ratio_replicates
from auto_circuit_dcd.metrics.uncertainty.sizes import SizeGrid, kept_columns

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit_dcd.metrics.multi import Routing

#: a routing label (a cluster label or a circuit name)
L = TypeVar("L", bound=Hashable)

__all__ = ["TestValues", "Curve", "curve_replicates", "difference_replicates",
           "area_weights", "areas", "area_replicates"]


@dataclass(frozen=True)
class Curve:
    """Per-example ``mu [n, n_sizes]`` of a curve, the rows it is taken on (bool ``[n]``) and
    the circuits it uses (for their edge counts)."""

    mu: np.ndarray
    rows: np.ndarray
    circuits: tuple[str, ...]

    @property
    def n_examples(self) -> int:
        return int(self.rows.sum())


@dataclass(frozen=True)
class TestValues:
    """Every circuit of one ranking on one test set, at the grid's sizes.

    Attributes:
        fractions: ``[n_sizes]`` the sizes.
        mu: ``{circuit: [n, n_sizes]}``.
        achieved: ``{circuit: [n_sizes]}`` edges each circuit held at each size.
        mu_full, mu_empty: ``[n]``.
        example_ids: the rows' ids.
    """

    fractions: np.ndarray
    mu: dict[str, np.ndarray]
    achieved: dict[str, np.ndarray]
    mu_full: np.ndarray
    mu_empty: np.ndarray
    example_ids: list[Hashable]

    @classmethod
    def from_results(cls, results: Mapping[str, FaithfulnessResult],
                     grid: SizeGrid | None = None) -> TestValues:
        """The values of ``results`` (one test set, one ranking) at ``grid``'s sizes (all
        evaluated sizes when None)."""
        if not results:
            raise ValueError("no circuits: give {name: FaithfulnessResult}")
        first = next(iter(results.values()))
        cols = (list(range(first.fractions.size)) if grid is None
                else kept_columns(first.fractions, grid))
        for name, r in results.items():
            if (r.example_ids != first.example_ids
                    or not np.array_equal(r.fractions, first.fractions)
                    or not np.allclose(r.mu_full, first.mu_full)
                    or not np.allclose(r.mu_empty, first.mu_empty)):
                raise ValueError(f"circuit {name!r} was evaluated on another test set or grid "
                                 "than the first one")
        return cls(fractions=first.fractions[cols].astype(np.float64),
                   mu={str(k): np.asarray(r.mu_circuit, np.float64)[:, cols]
                       for k, r in results.items()},
                   achieved={str(k): np.asarray(r.achieved_counts)[cols].astype(np.int64)
                             for k, r in results.items()},
                   mu_full=np.asarray(first.mu_full, np.float64),
                   mu_empty=np.asarray(first.mu_empty, np.float64),
                   example_ids=list(first.example_ids))

    @property
    def n_examples(self) -> int:
        return int(self.mu_full.shape[0])

    def _rows(self, rows: np.ndarray | None) -> np.ndarray:
        if rows is None:
            return np.ones(self.n_examples, dtype=bool)
        rows = np.asarray(rows)
        if rows.dtype != np.bool_:
            mask = np.zeros(self.n_examples, dtype=bool)
            mask[rows.astype(np.int64)] = True
            return mask
        return rows

    def _get(self, name: str) -> np.ndarray:
        if name not in self.mu:
            raise KeyError(f"no circuit {name!r}; circuits: {sorted(self.mu)}")
        return self.mu[name]

    def circuit(self, name: str, rows: np.ndarray | None = None) -> Curve:
        """Circuit ``name`` on ``rows`` (bool mask or positions; all by default)."""
        return Curve(self._get(name), self._rows(rows), (name,))

    def oracle(self, names: Sequence[str], rows: np.ndarray | None = None) -> Curve:
        """Per example the best of ``names`` (the method's multi-circuit faithfulness)."""
        return Curve(np.max(np.stack([self._get(n) for n in names]), axis=0), self._rows(rows),
                     tuple(names))

    def routed(self, circuits: Mapping[L, str], routing: Routing,
               fallback: L | None = None, exclude: Sequence[L] = ()) -> Curve:
        """Per example the circuit of its label in ``routing`` (``{label: circuit}``); labels
        without a circuit go to ``fallback``'s, those in ``exclude`` are left out."""
        from auto_circuit_dcd.metrics.multi import _routing_index

        labels = list(circuits)
        idx = _routing_index(routing, labels, self.example_ids, fallback, exclude)
        stack = np.stack([self._get(circuits[lab]) for lab in labels])
        rows = idx >= 0
        mu = np.zeros_like(stack[0])
        mu[rows] = stack[idx[rows], np.flatnonzero(rows)]
        return Curve(mu, rows, tuple(circuits[lab] for lab in labels))

    def edges(self, curve: Curve, size: int) -> dict[str, int]:
        """``{circuit: edges held at size index size}`` of the circuits ``curve`` uses."""
        return {name: int(self.achieved[name][size]) for name in curve.circuits}

    def _den(self, rows: np.ndarray) -> np.ndarray:
        return (self.mu_full - self.mu_empty) * rows


def _num(values: TestValues, curve: Curve) -> np.ndarray:
    return (curve.mu - values.mu_empty[:, None]) * curve.rows[:, None]


def curve_replicates(values: TestValues, curves: Sequence[Curve],
                     weights: np.ndarray) -> Replicates:
    """Faithfulness of each curve at each size: ``K = len(curves) * n_sizes`` columns,
    curve-major."""
    s = values.fractions.size
    num = np.concatenate([_num(values, c) for c in curves], axis=1)
    den = np.concatenate([np.repeat(values._den(c.rows)[:, None], s, axis=1) for c in curves],
                         axis=1)
    return ratio_replicates(num, den, weights, np.repeat([c.n_examples for c in curves], s))


def difference_replicates(values: TestValues, pairs: Sequence[tuple[Curve, Curve]],
                          weights: np.ndarray) -> Replicates:
    """``f(a) - f(b)`` of each pair at each size (curve-major); a pair's curves must be
    taken on the same rows."""
    s = values.fractions.size
    nums, dens = [], []
    for a, b in pairs:
        if not np.array_equal(a.rows, b.rows):
            raise ValueError("a paired comparison needs both curves on the same examples")
        nums.append((a.mu - b.mu) * a.rows[:, None])
        dens.append(np.repeat(values._den(a.rows)[:, None], s, axis=1))
    return ratio_replicates(np.concatenate(nums, axis=1), np.concatenate(dens, axis=1),
                            weights, np.repeat([a.n_examples for a, _ in pairs], s))


def area_weights(fractions: Floats) -> np.ndarray:
    """``[n_sizes]`` weights with ``cpr((fractions, f)) == weights @ f`` for every curve
    ``f`` (NaN with fewer than two sizes: no area)."""
    p = np.asarray(fractions, dtype=np.float64)
    if p.size < 2:
        return np.full(p.size, np.nan)
    return np.array([cpr((p, unit)) for unit in np.eye(p.size)])


def areas(curves: np.ndarray, weights: np.ndarray, what: str = "cpr") -> np.ndarray:
    """``[R, C]`` areas of ``[R, C * n_sizes]`` curves (curve-major): ``"cpr"`` the area under
    f, or a CMD form (a key of :data:`CMD_FORMS`) the area of its gap to the model."""
    r, s = curves.shape[0], weights.size
    f = curves.reshape(r, -1, s)
    if what != "cpr":
        f = CMD_FORMS[check_cmd_form(what)](f)
    return f @ weights


def area_replicates(reps: Replicates, weights: np.ndarray, what: str = "cpr") -> Replicates:
    """CPR (``what="cpr"``) or CMD (a CMD form) of curve replicates (curve-major columns)."""
    return reps.map(lambda f: areas(f, weights, what), reps.n_examples[::weights.size])
