"""Intervals of curves, CPR and CMD, and paired comparisons of curves, as typed records.

A run's values under its convention (:class:`RunValues`: the curves ranked for CPR, and
for CMD when it ranks differently) and a :class:`~.bootstrap.Bootstrap` plan give:

1. :func:`curve_intervals`: per curve (a function ``TestValues -> Curve``, applied to each
   ranking's values), the faithfulness at each size with its interval (a :class:`Band`),
   CPR and CMD with theirs, all from one set of resamples;
2. :func:`cross_intervals`: ``matrix[i][j]`` = circuit of group ``i`` on the examples of
   group ``j`` at one size, with intervals;
3. :func:`compare`: ``a - b`` for pairs of curves on the same examples, at each size and on
   CPR: the difference's interval (same resamples), a sign-flip p-value
   (:mod:`.paired`), the p-value adjusted over the family (the sizes of every pair form
   one family; the CPR comparisons another), and a mark: ``"better"`` when the adjusted
   p-value is below ``1 - level`` and the interval lies above 0, ``"worse"`` when it lies
   below 0, else ``"not distinguishable"``. Each comparison records the edges every
   circuit on either side held at its size, and says when they differ.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from auto_circuit_dcd.evaluation.faithfulness import FaithfulnessResult
from auto_circuit_dcd.metrics.convention import Convention
from auto_circuit_dcd.metrics.uncertainty.bootstrap import Bootstrap, Interval, Replicates
from auto_circuit_dcd.metrics.uncertainty.paired import (
    CORRECTIONS,
    check_correction,
    sign_flip_pvalues,
)
from auto_circuit_dcd.metrics.uncertainty.sizes import SizeGrid, size_note
from auto_circuit_dcd.metrics.uncertainty.values import (
    Curve,
    TestValues,
    area_replicates,
    area_weights,
    curve_replicates,
    difference_replicates,
)

__all__ = ["RunValues", "Band", "CurveIntervals", "CrossIntervals", "Comparison",
           "ComparisonFamily", "CurveBuilder", "curve_intervals", "cross_intervals",
           "compare", "MARKS"]

#: a curve made from one ranking's values (applied to the CPR and the CMD ranking alike)
CurveBuilder = Callable[[TestValues], Curve]
#: what a paired comparison can conclude about ``a - b``
MARKS = ("better", "worse", "not distinguishable")


@dataclass(frozen=True)
class RunValues:
    """A run's per-example values: the curves ranked for CPR (``cpr``; also every curve
    and comparison at a size) and for CMD (``cmd``; the same object when one ranking)."""

    cpr: TestValues
    cmd: TestValues
    convention: Convention

    @classmethod
    def from_results(cls, by_ranking: Mapping[str, Mapping[str, FaithfulnessResult]],
                     convention: Convention, grid: SizeGrid | None = None) -> RunValues:
        """From ``{ranking: {circuit: FaithfulnessResult}}`` (one test set) at ``grid``'s
        sizes."""
        missing = [r for r in convention.rankings() if r not in by_ranking]
        if missing:
            raise ValueError(f"the convention ranks edges by {convention.rankings()}; no "
                             f"results for {missing}")
        cpr = TestValues.from_results(by_ranking[convention.cpr_ranking], grid)
        cmd = cpr if convention.cmd_ranking == convention.cpr_ranking else \
            TestValues.from_results(by_ranking[convention.cmd_ranking], grid)
        return cls(cpr, cmd, convention)

    @property
    def weights(self) -> np.ndarray:
        """Trapezoid weights of the sizes (CPR and CMD)."""
        return area_weights(self.cpr.fractions)


@dataclass
class Band:
    """A curve's value at each size with its interval (lists over the sizes)."""

    estimate: list[float]
    low: list[float]
    high: list[float]


@dataclass
class CurveIntervals:
    """One curve: faithfulness at each size, CPR and CMD, each with its interval, over
    ``n_examples`` test examples; ``faithfulness_cmd`` is the curve CMD is taken on when the
    convention ranks edges differently for CMD (else None)."""

    faithfulness: Band
    cpr: Interval
    cmd: Interval
    n_examples: int
    faithfulness_cmd: Band | None = None


@dataclass
class CrossIntervals:
    """``estimate[i][j]``: the circuit of group ``labels[i]`` on the test examples of group
    ``labels[j]`` at size ``p``, with ``low`` / ``high``; ``n_examples[j]``: group ``j``'s
    examples."""

    p: float
    labels: list[int]
    estimate: list[list[float]]
    low: list[list[float]]
    high: list[list[float]]
    n_examples: list[int]
    orientation: str


@dataclass
class Comparison:
    """``a - b`` on the same ``n_examples`` test examples at ``size`` (None: on CPR).

    ``difference`` is ``f(a) - f(b)`` with its interval; ``p_value`` the sign-flip test's,
    ``p_adjusted`` after the family's correction; ``mark`` one of :data:`MARKS`;
    ``edges_a`` / ``edges_b`` the edges each circuit held (``{}`` on CPR); ``note`` says
    when the sizes differ or a circuit is empty."""

    a: str
    b: str
    size: float | None
    n_examples: int
    a_value: float
    b_value: float
    difference: Interval
    p_value: float
    p_adjusted: float
    mark: str
    edges_a: dict[str, int]
    edges_b: dict[str, int]
    note: str


@dataclass
class ComparisonFamily:
    """Comparisons tested together: ``correction`` over the sizes of every pair (and over
    the CPR comparisons separately), marks at ``level``."""

    name: str
    level: float
    test: str
    correction: str
    comparisons: list[Comparison]


def _bands(reps: Replicates, n_curves: int, boot: Bootstrap) -> list[Band]:
    low, high = reps.interval(boot.level, boot.method)
    s = reps.estimate.size // max(n_curves, 1)
    return [Band(*(list(map(float, x[c * s:(c + 1) * s])) for x in (reps.estimate, low, high)))
            for c in range(n_curves)]


def curve_intervals(values: RunValues, curves: Sequence[CurveBuilder],
                    boot: Bootstrap) -> list[CurveIntervals]:
    """Faithfulness at each size, CPR and CMD (by ``values.convention``) of each curve."""
    if not curves:
        return []
    w = values.weights
    weights = boot.weights(values.cpr.n_examples)
    built = [c(values.cpr) for c in curves]
    reps = curve_replicates(values.cpr, built, weights)
    cmd_reps = reps if values.cmd is values.cpr else curve_replicates(
        values.cmd, [c(values.cmd) for c in curves], weights)
    cprs = area_replicates(reps, w, "cpr").intervals(boot.level, boot.method)
    cmds = area_replicates(cmd_reps, w, values.convention.cmd_form).intervals(
        boot.level, boot.method)
    bands = _bands(reps, len(curves), boot)
    cmd_bands = (None if cmd_reps is reps else _bands(cmd_reps, len(curves), boot))
    return [CurveIntervals(faithfulness=bands[i], cpr=cprs[i], cmd=cmds[i],
                           n_examples=built[i].n_examples,
                           faithfulness_cmd=None if cmd_bands is None else cmd_bands[i])
            for i in range(len(curves))]


def cross_intervals(values: RunValues, circuits: Mapping[int, str], groups: np.ndarray,
                    p: float, boot: Bootstrap) -> CrossIntervals:
    """Circuit ``circuits[i]`` on the examples whose label in ``groups`` (``[n]``) is ``j``,
    at size ``p`` (one of the grid's)."""
    tv = values.cpr
    hits = np.flatnonzero(np.isclose(tv.fractions, p, rtol=0, atol=1e-12))
    if hits.size == 0:
        raise ValueError(f"size {p} is not in the grid {tv.fractions.tolist()}")
    s, labels = int(hits[0]), list(circuits)
    groups = np.asarray(groups)
    curves = [tv.circuit(circuits[i], groups == j) for i in labels for j in labels]
    reps = curve_replicates(tv, curves, boot.weights(tv.n_examples))
    cols = np.arange(len(curves)) * tv.fractions.size + s
    low, high = reps.interval(boot.level, boot.method)
    k = len(labels)

    def square(x: np.ndarray) -> list[list[float]]:
        return [[float(v) for v in row] for row in x[cols].reshape(k, k)]

    return CrossIntervals(
        p=float(p), labels=[int(x) for x in labels], estimate=square(reps.estimate),
        low=square(low), high=square(high),
        n_examples=[int((groups == j).sum()) for j in labels],
        orientation="estimate[i][j] = circuit of group i on the test examples of group j")


def _mark(p_adj: float, low: float, high: float, alpha: float) -> str:
    if np.isfinite(p_adj) and p_adj < alpha:
        if low > 0:
            return "better"
        if high < 0:
            return "worse"
    return "not distinguishable"


def compare(values: RunValues, pairs: Sequence[tuple[str, str, CurveBuilder, CurveBuilder]],
            boot: Bootstrap, name: str, correction: str = "holm") -> ComparisonFamily:
    """``a - b`` for each ``(a name, b name, a curve, b curve)`` at every size and on CPR
    (both curves on the same examples), marked at ``boot.level``."""
    check_correction(correction)
    tv, w = values.cpr, values.weights
    s = tv.fractions.size
    built = [(a(tv), b(tv)) for _, _, a, b in pairs]
    weights = boot.weights(tv.n_examples)
    diff = difference_replicates(tv, built, weights)
    cpr_diff = area_replicates(diff, w, "cpr")
    levels = curve_replicates(tv, [c for pair in built for c in pair], weights).estimate
    d_low, d_high = diff.interval(boot.level, boot.method)
    c_low, c_high = cpr_diff.interval(boot.level, boot.method)
    p_size, p_cpr = [], []
    for a, b in built:
        delta = (a.mu - b.mu)[a.rows]
        p_size.append(sign_flip_pvalues(delta, boot.n_resamples, boot.seed))
        p_cpr.append(sign_flip_pvalues(delta @ w, boot.n_resamples, boot.seed)[0]
                     if np.all(np.isfinite(w)) else np.nan)
    p_size_all = np.concatenate(p_size) if p_size else np.zeros(0)
    adj_size = CORRECTIONS[correction](p_size_all)
    adj_cpr = CORRECTIONS[correction](np.asarray(p_cpr, dtype=np.float64))
    out: list[Comparison] = []
    for i, ((na, nb, _, _), (a, b)) in enumerate(zip(pairs, built)):
        unequal = []
        for j in range(s):
            col = i * s + j
            ea, eb = tv.edges(a, j), tv.edges(b, j)
            if size_note(ea, eb):
                unequal.append(f"{100 * tv.fractions[j]:g}%")
            out.append(Comparison(
                a=na, b=nb, size=float(tv.fractions[j]), n_examples=a.n_examples,
                a_value=float(levels[2 * i * s + j]), b_value=float(levels[(2 * i + 1) * s + j]),
                difference=Interval(float(diff.estimate[col]), float(d_low[col]),
                                    float(d_high[col])),
                p_value=float(p_size_all[col]), p_adjusted=float(adj_size[col]),
                mark=_mark(adj_size[col], d_low[col], d_high[col], boot.alpha),
                edges_a=ea, edges_b=eb, note=size_note(ea, eb)))
        a_cpr = float(levels[2 * i * s:(2 * i + 1) * s] @ w)
        b_cpr = float(levels[(2 * i + 1) * s:(2 * i + 2) * s] @ w)
        out.append(Comparison(
            a=na, b=nb, size=None, n_examples=a.n_examples, a_value=a_cpr, b_value=b_cpr,
            difference=Interval(float(cpr_diff.estimate[i]), float(c_low[i]), float(c_high[i])),
            p_value=float(p_cpr[i]), p_adjusted=float(adj_cpr[i]),
            mark=_mark(adj_cpr[i], c_low[i], c_high[i], boot.alpha), edges_a={}, edges_b={},
            note="" if not unequal else (f"sizes differ or a circuit is empty at "
                                         f"{', '.join(unequal)} (see those sizes)")))
    return ComparisonFamily(
        name=name, level=boot.level,
        test="sign-flip test of the mean per-example difference (paired t statistic)",
        correction=(f"{correction} over the {len(p_size_all)} (pair, size) comparisons; "
                    f"{correction} over the {len(p_cpr)} CPR comparisons"),
        comparisons=out)
