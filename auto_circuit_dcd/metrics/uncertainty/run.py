"""Every faithfulness number of a run with its interval, the paired comparisons, the
verdicts and the warnings, from the circuits evaluated once on the test split.

:func:`run_uncertainty` takes what the main job already has (``{ranking: {circuit:
FaithfulnessResult}}``, its convention, each test example's cluster and K-random circuit)
and, with no model pass:

1. the grid: sizes that ask for no edge are left out (:func:`~.sizes.size_grid`);
2. intervals (:mod:`.families`, one resampling plan for everything): the single circuit,
   DCD oracle / routed / routed without noise, K-random oracle / routed, per cluster its
   own circuit and the single circuit on its routed examples (curves, CPR, CMD), and the
   cross-faithfulness matrix at ``p``;
3. paired comparisons (sign-flip p-values, Holm over each family's sizes): own vs single
   per cluster, DCD routed vs single, DCD routed vs K-random routed, DCD oracle vs
   K-random oracle;
4. verdicts (a) own beats single, (b) separate mechanisms at ``p``, (c) DCD routed beats
   K-random routed; a warning per cluster with too few test examples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from auto_circuit_dcd.evaluation.faithfulness import FaithfulnessResult
from auto_circuit_dcd.metrics.convention import Convention
from auto_circuit_dcd.metrics.uncertainty.bootstrap import Bootstrap, Interval
from auto_circuit_dcd.metrics.uncertainty.families import (
    ComparisonFamily,
    CrossIntervals,
    CurveBuilder,
    CurveIntervals,
    RunValues,
    compare,
    cross_intervals,
    curve_intervals,
)
from auto_circuit_dcd.metrics.uncertainty.sizes import SizeGrid, size_grid
from auto_circuit_dcd.metrics.uncertainty.verdicts import (
    SampleSizeWarning,
    Thresholds,
    Verdict,
    sample_size_warning,
    separate_mechanisms,
    verdicts_from_comparisons,
)

__all__ = ["UncertaintySettings", "ClusterIntervals", "RunUncertainty", "run_uncertainty"]


@dataclass
class UncertaintySettings:
    """How every interval, test and verdict of a :class:`RunUncertainty` was made."""

    resampled: str
    n_resamples: int
    seed: int
    level: float
    interval: str
    test: str
    correction: str
    faithful: float
    low: float
    min_examples: int
    target_half_width: float


@dataclass
class ClusterIntervals:
    """One cluster's test examples (those routed to it): its own circuit and the single
    circuit on them."""

    label: int
    n_test: int
    own: CurveIntervals
    single_on_group: CurveIntervals


@dataclass
class RunUncertainty:
    """A run's faithfulness numbers with intervals, its comparisons, verdicts and warnings.

    ``comparisons`` keys: ``"own_vs_single"``, ``"dcd_routed_vs_single"``,
    ``"dcd_routed_vs_k_random_routed"``, ``"dcd_oracle_vs_k_random_oracle"`` (the last two
    absent without K-random circuits).
    """

    settings: UncertaintySettings
    grid: SizeGrid
    single: CurveIntervals
    dcd_oracle: CurveIntervals
    dcd_routed: CurveIntervals
    dcd_routed_excluding_noise: CurveIntervals
    k_random_oracle: CurveIntervals | None
    k_random_routed: CurveIntervals | None
    clusters: list[ClusterIntervals]
    cross: CrossIntervals
    comparisons: dict[str, ComparisonFamily]
    verdicts: list[Verdict]
    warnings: list[SampleSizeWarning]


def run_uncertainty(
    by_ranking: Mapping[str, Mapping[str, FaithfulnessResult]],
    convention: Convention,
    *,
    single: str,
    clusters: Mapping[int, str],
    routing: Sequence[int],
    p: float,
    k_random: Sequence[str] = (),
    k_random_routing: Sequence[str] | None = None,
    noise_fallback: int | None = None,
    boot: Bootstrap = Bootstrap(),
    thresholds: Thresholds = Thresholds(),
    correction: str = "holm",
    test_fraction: float | None = None,
) -> RunUncertainty:
    """Intervals, comparisons, verdicts and warnings of one run (module docstring).

    Args:
        by_ranking: ``{ranking: {circuit name: FaithfulnessResult}}`` on the test split
            (every ranking of ``convention``).
        convention: the run's CPR/CMD convention.
        single: the single circuit's name.
        clusters: ``{cluster label: circuit name}``.
        routing: each test example's cluster label, in the results' row order (``-1``:
            noise, sent to ``noise_fallback``'s circuit in "DCD routed", left out of
            "routed excluding noise" and of every cluster's group).
        p: the size of the cross-faithfulness matrix and of claim (b) (one of the grid's).
        k_random: the K-random circuits' names (none: no K-random records).
        k_random_routing: each test example's K-random circuit name.
        noise_fallback: the cluster whose circuit noise examples use (default: the first).
        boot, thresholds, correction: the resampling plan, the verdicts' thresholds, the
            correction of each comparison family (:data:`~.paired.CORRECTIONS`).
        test_fraction: the run's test fraction, to turn a warning's examples into prompts.
    """
    first = next(iter(by_ranking[convention.cpr_ranking].values()))
    grid = size_grid(first.fractions.tolist(), first.n_edges)
    if not grid.fractions:
        raise ValueError(f"no size asks for an edge: {grid.reason}")
    if not any(np.isclose(grid.fractions, p, rtol=0, atol=1e-12)):
        raise ValueError(f"p = {p} is not among the sizes {grid.fractions}"
                         + (f" ({grid.reason})" if p in grid.dropped else ""))
    values = RunValues.from_results(by_ranking, convention, grid)
    route = np.asarray(routing)
    if route.shape != (values.cpr.n_examples,):
        raise ValueError(f"routing has {route.size} labels for {values.cpr.n_examples} test "
                         "examples (one per example, in the results' order)")
    labels = list(clusters)
    fallback = labels[0] if noise_fallback is None else noise_fallback
    names = dict(clusters)
    kr_names = {n: n for n in k_random}
    has_kr = bool(kr_names) and k_random_routing is not None

    def group(j: int) -> np.ndarray:
        return route == j

    curve: dict[str, CurveBuilder] = {  # the families' curves, by name
        "single": lambda v: v.circuit(single),
        "dcd_oracle": lambda v: v.oracle(list(names.values())),
        "dcd_routed": lambda v: v.routed(names, route, fallback=fallback),
        "dcd_routed_excluding_noise": lambda v: v.routed(names, route, exclude=(-1,)),
        "k_random_oracle": lambda v: v.oracle(list(kr_names)),
        "k_random_routed": lambda v: v.routed(kr_names, list(k_random_routing or ())),
    }
    if not has_kr:
        del curve["k_random_oracle"], curve["k_random_routed"]
    own = {j: _on_rows(names[j], group(j)) for j in labels}
    single_on = {j: _on_rows(single, group(j)) for j in labels}

    families = list(curve.values())
    per_cluster = [b for j in labels for b in (own[j], single_on[j])]
    found = curve_intervals(values, families + per_cluster, boot)
    fixed = dict(zip(curve, found[:len(families)]))
    found_clusters = found[len(families):]
    cluster_records = [ClusterIntervals(label=int(j), n_test=int(group(j).sum()),
                                        own=found_clusters[2 * i],
                                        single_on_group=found_clusters[2 * i + 1])
                       for i, j in enumerate(labels)]

    comparisons = {
        "own_vs_single": compare(values, [
            (f"cluster {j} own", f"single on cluster {j}", own[j], single_on[j])
            for j in labels], boot, "own circuit vs single circuit on each cluster's examples",
            correction),
        "dcd_routed_vs_single": compare(
            values, [("DCD routed", "single", curve["dcd_routed"], curve["single"])], boot,
            "DCD routed vs single", correction),
    }
    if has_kr:
        comparisons["dcd_routed_vs_k_random_routed"] = compare(
            values, [("DCD routed", "K-random routed", curve["dcd_routed"],
                      curve["k_random_routed"])], boot,
            "DCD routed vs K-random routed", correction)
        comparisons["dcd_oracle_vs_k_random_oracle"] = compare(
            values, [("DCD oracle", "K-random oracle", curve["dcd_oracle"],
                      curve["k_random_oracle"])], boot,
            "DCD oracle vs K-random oracle", correction)

    cross = cross_intervals(values, names, route, p, boot)
    verdicts = verdicts_from_comparisons(
        comparisons["own_vs_single"], "own beats single",
        "each cluster's own circuit is more faithful on its group than the single circuit")
    verdicts.append(_separate(values, cross, cluster_records, names, single, route, p, boot,
                              thresholds))
    if has_kr:
        verdicts += verdicts_from_comparisons(
            comparisons["dcd_routed_vs_k_random_routed"], "DCD beats K-random",
            "DCD routed is more faithful than K-random routed")

    s = int(np.flatnonzero(np.isclose(grid.fractions, p, rtol=0, atol=1e-12))[0])
    warnings = []
    for c in cluster_records:
        widths = [(b.high[s] - b.low[s]) / 2 for b in (c.own.faithfulness,
                                                         c.single_on_group.faithfulness)]
        w = max(widths) if np.isfinite(widths).all() else float("nan")
        warn = sample_size_warning(c.label, c.n_test, w, values.cpr.n_examples, thresholds,
                                   test_fraction)
        if warn is not None:
            warnings.append(warn)
    return RunUncertainty(
        settings=UncertaintySettings(
            resampled="test examples, with replacement (n of n), every statistic on the same "
                      "resamples",
            n_resamples=boot.n_resamples, seed=boot.seed, level=boot.level,
            interval=boot.method, test=next(iter(comparisons.values())).test,
            correction=correction, faithful=thresholds.faithful, low=thresholds.low,
            min_examples=thresholds.min_examples,
            target_half_width=thresholds.target_half_width),
        grid=grid, single=fixed["single"], dcd_oracle=fixed["dcd_oracle"],
        dcd_routed=fixed["dcd_routed"],
        dcd_routed_excluding_noise=fixed["dcd_routed_excluding_noise"],
        k_random_oracle=fixed.get("k_random_oracle"),
        k_random_routed=fixed.get("k_random_routed"),
        clusters=cluster_records, cross=cross, comparisons=comparisons, verdicts=verdicts,
        warnings=warnings)


def _on_rows(name: str, rows: np.ndarray) -> CurveBuilder:
    """The curve of circuit ``name`` on the examples ``rows`` (a bool mask)."""
    return lambda v: v.circuit(name, rows)


def _separate(values: RunValues, cross: CrossIntervals, clusters: list[ClusterIntervals],
              names: Mapping[int, str], single: str, route: np.ndarray, p: float,
              boot: Bootstrap, thresholds: Thresholds) -> Verdict:
    """Claim (b), with the refuting side's intervals at Bonferroni's level."""
    k = len(names)
    m = k * (k - 1) + k
    strict_boot = Bootstrap(n_resamples=boot.n_resamples,
                            level=1 - boot.alpha / max(m, 1), method=boot.method,
                            seed=boot.seed)
    strict_cross = cross_intervals(values, names, route, p, strict_boot)
    s = int(np.flatnonzero(np.isclose(values.cpr.fractions, p, rtol=0, atol=1e-12))[0])

    def at(band_of: CurveIntervals) -> Interval:
        b = band_of.faithfulness
        return Interval(b.estimate[s], b.low[s], b.high[s])

    single_on = {c.label: at(c.single_on_group) for c in clusters}
    strict = curve_intervals(values, [_on_rows(single, route == j) for j in names], strict_boot)
    strict_single = {j: at(c) for j, c in zip(names, strict)}
    return separate_mechanisms(cross, single_on, thresholds, boot.level,
                               strict_cross=strict_cross, strict_single=strict_single)
