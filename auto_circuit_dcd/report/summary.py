"""The run's summary as plain text: what ``auto-circuit-dcd run`` prints when it ends.

1. one header line (model, the method whose rows made the clusters and the one that built
   the circuits, split sizes, edges, k), the clustering space and how it was chosen (and a
   near tie between spaces with the flag that reruns in the other), cluster quality
   against the known groups, a line per cluster (sizes, composition);
2. the comparisons at ``p`` (``--p-cross``, default 5%), each on the same test examples:
   each cluster's own circuit vs the single circuit on its group, DCD routed vs the
   single circuit and vs K-random routed: both values, the difference with its interval,
   the adjusted p-value and the mark (better / worse / not distinguishable), with the
   edges each side held; a line names every comparison whose sides hold different
   numbers of edges;
3. the headline values at ``p`` with their intervals, then the method's claims as
   verdicts at ``p`` and on CPR, word for word as ``report.json`` gives them (the summary
   calls nothing a win that the verdict does not);
4. noise and dropped examples when there are any, the sizes left out of the grid, then CPR
   and CMD per circuit family with their intervals, and the too-few-examples warnings.

Numbers are shown by the report's rule (:mod:`auto_circuit_dcd.report.values`: rounding
noise as 0). A report without intervals (``uncertainty`` null) prints the values alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from auto_circuit_dcd.report.records import RunReport

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit_dcd.metrics.uncertainty import (
        Band,
        Comparison,
        Interval,
        RunUncertainty,
        Verdict,
    )

__all__ = ["summary_table", "comparison_line", "interval_text", "p_text", "same_size",
           "size_flag", "verdict_text", "CLAIM_NAMES", "CLAIM_FAMILIES", "SIZE_FLAGS"]

#: how the summary names each claim of ``report.uncertainty.verdicts``
CLAIM_NAMES = {"own beats single": "(a) own beats single",
               "separate mechanisms": "(b) separate mechanisms",
               "DCD beats K-random": "(c) DCD routed beats K-random routed"}


def summary_table(report: RunReport) -> str:
    """Plain text: clusters and their composition, the comparisons at ``p`` with intervals
    and marks, the verdicts, CPR/CMD per circuit family with intervals, and warnings
    (numbers shown by the report's rule, rounding noise as 0)."""
    from auto_circuit_dcd.report.space import methods_text, near_tie_text, space_text
    from auto_circuit_dcd.report.values import fixed

    def num(v: float) -> str:
        return fixed(v)

    u = report.uncertainty
    fr, j = report.edge_fractions, report.p_index
    lines = [f"{report.model} | {methods_text(report)} | {report.n_train} train / "
             f"{report.n_test} test | {report.n_edges} edges | k = {report.n_clusters}"]
    lines += [t for t in (space_text(report), near_tie_text(report)) if t]
    q = report.cluster_quality
    if q is not None:
        lines.append(f"cluster quality vs known groups: ARI {num(q.ari)}, NMI {num(q.nmi)}")
    if u is None:
        lines.append(f"{'cluster':>7} {'size':>5} {'test':>5}  {'f own':>7} {'f single':>8}  "
                     "composition")
        for c in report.dcd.clusters:
            lines.append(f"{c.label:>7} {c.size:>5} {c.n_test:>5}  "
                         f"{num(c.faithfulness_own[j]):>7} {num(c.single_on_group[j]):>8}  "
                         f"{_composition(c.composition)}")
        lines.append(f"at p = {fr[j]:g}: single {num(report.single.faithfulness[j])}, "
                     f"DCD routed {num(report.dcd.faithfulness_routed[j])}, "
                     f"DCD oracle {num(report.dcd.faithfulness_oracle[j])}")
    else:
        lines.append(f"{'cluster':>7} {'size':>5} {'test':>5}  composition")
        for c in report.dcd.clusters:
            lines.append(f"{c.label:>7} {c.size:>5} {c.n_test:>5}  "
                         f"{_composition(c.composition)}")
        lines += _comparisons(u, fr[j])
    routing = report.routing
    if routing.n_test_noise:
        lines.append(f"{routing.n_test_noise} of {report.n_test} test examples routed to "
                     f"noise: DCD routed sends them to cluster {routing.noise_fallback}; "
                     f"without them {num(report.dcd.faithfulness_routed_excluding_noise[j])}")
    dropped = {split: len(ids) for split, ids in (("train", report.dropped_examples.train),
                                                  ("test", report.dropped_examples.test)) if ids}
    if dropped:
        lines.append("dropped (non-finite attribution rows): "
                     + ", ".join(f"{n} {split}" for split, n in dropped.items()))
    if u is not None and u.grid.dropped:
        lines.append(f"left out of the grid and of CPR/CMD: {_percents(u.grid.dropped)} (fewer "
                     f"than one of the {u.grid.n_edges} edges asked)")
    lines.append(f"over edge fractions {fr[0]:g} to {fr[-1]:g}: CPR (higher is better), "
                 "CMD (lower is better)" + ("" if u is None else
                                            f", {u.settings.level:.0%} intervals"))
    for name, cpr, cmd in _score_rows(report):
        lines.append(f"  {name:<52} CPR {cpr}   CMD {cmd}")
    if u is not None:
        lines += [f"warning: {w.message}" for w in u.warnings]
    return "\n".join(lines)


# ------------------------------------------------------------------------ pieces
def _composition(comp: dict[str, int]) -> str:
    return ", ".join(f"{g}:{n}" for g, n in sorted(comp.items())) or "-"


def _percents(fractions: Sequence[float]) -> str:
    return ", ".join(f"{100 * p:g}%" for p in fractions)


def interval_text(iv: Interval, signed: bool = False) -> str:
    """``0.658 [0.626, 0.687]`` (``signed``: ``+0.658 [+0.626, +0.687]``)."""
    from auto_circuit_dcd.report.values import fixed

    def show(v: float) -> str:
        text = fixed(v)
        return ("+" + text if signed and text != "n/a" and not text.startswith("-")
                else text)

    return f"{show(iv.estimate)} [{show(iv.low)}, {show(iv.high)}]"


def p_text(p: float) -> str:
    """An adjusted p-value to 3 decimals, ``<0.001`` below that, ``n/a`` when missing."""
    from auto_circuit_dcd.report.values import finite

    v = finite(p)
    return "n/a" if v is None else "<0.001" if v < 0.001 else f"{v:.3f}"


def _edges(counts: dict[str, int]) -> str:
    return ",".join(str(v) for v in counts.values()) or "-"


#: how the summary names each correction of the p-values
CORRECTION_NAMES = {"holm": "Holm-adjusted", "bh": "Benjamini-Hochberg-adjusted",
                    "none": "not adjusted"}
#: a claim's verdicts -> the comparison family they rest on
CLAIM_FAMILIES = {"own beats single": "own_vs_single",
                  "DCD beats K-random": "dcd_routed_vs_k_random_routed"}
#: what a mark or a verdict is followed by when a comparison behind it sets circuits of
#: different edge counts against each other, or an empty circuit (at some sizes: on CPR)
SIZE_FLAGS = ("sizes differ", "empty circuit", "sizes differ at some sizes")


def size_flag(comparisons: Sequence[Comparison]) -> str:
    """``"sizes differ"`` when a comparison's sides hold different numbers of edges,
    ``"empty circuit"`` when they hold as many but a side holds none, ``"sizes differ at
    some sizes"`` for a CPR comparison whose curves do so somewhere (its note), else ``""``."""
    flags = set()
    for c in comparisons:
        counts = list(c.edges_a.values()) + list(c.edges_b.values())
        if len(set(counts)) > 1:
            flags.add(SIZE_FLAGS[0])
        elif 0 in counts:
            flags.add(SIZE_FLAGS[1])
        elif not counts and c.note:
            flags.add(SIZE_FLAGS[2])
    return next((f for f in SIZE_FLAGS if f in flags), "")


def _flagged(text: str, comparisons: Sequence[Comparison]) -> str:
    flag = size_flag(comparisons)
    return f"{text} ({flag})" if flag else text


def comparison_line(label: str, c: Comparison) -> str:
    """One comparison as the summary prints it: label, examples, edges of each side,
    both values, the difference with its interval, the adjusted p-value and the mark
    (followed by ``(sizes differ)`` when the sides hold different numbers of edges,
    :func:`size_flag`)."""
    from auto_circuit_dcd.report.values import fixed

    mark = _flagged(c.mark, [c])
    return (f"  {label:<31} {c.n_examples:>4} {_edges(c.edges_a) + '/' + _edges(c.edges_b):>9}"
            f"  {fixed(c.a_value):>6} {fixed(c.b_value):>6}  "
            f"{interval_text(c.difference, signed=True):<25} {p_text(c.p_adjusted):>6}  {mark}")


def same_size(a: float | None, b: float | None) -> bool:
    """Whether two sizes of comparisons or verdicts are the same (None: CPR)."""
    return a is None and b is None or (a is not None and b is not None
                                       and abs(a - b) < 1e-12)


def _at(comparisons: list[Comparison], size: float | None) -> list[Comparison]:
    """The comparisons at ``size`` (None: those on CPR)."""
    return [c for c in comparisons if same_size(c.size, size)]


def _comparisons(u: RunUncertainty, p: float) -> list[str]:
    """The comparisons at ``p``, the headline values there, and the verdicts."""
    rows = []
    for c in _at(u.comparisons["own_vs_single"].comparisons, p):
        rows.append((c.a.replace(" own", "") + " own vs single", c))
    rows += [("DCD routed vs single", c)
             for c in _at(u.comparisons["dcd_routed_vs_single"].comparisons, p)]
    if "dcd_routed_vs_k_random_routed" in u.comparisons:
        rows += [("DCD routed vs K-random routed", c) for c in
                 _at(u.comparisons["dcd_routed_vs_k_random_routed"].comparisons, p)]
    settings = u.settings
    lines = [f"at p = {100 * p:g}%, on the same test examples: a - b with its "
             f"{settings.level:.0%} interval, p "
             f"{CORRECTION_NAMES.get(settings.correction, settings.correction)}",
             f"  {'comparison':<31} {'n':>4} {'edges a/b':>9}  {'f a':>6} {'f b':>6}  "
             f"{'a - b [interval]':<25} {'p adj':>6}  mark"]
    lines += [comparison_line(label, c) for label, c in rows]
    if any(size_flag([c]) for _, c in rows):
        lines.append("  (sizes differ): the two sides hold different numbers of edges (edges "
                     "a/b); a side of 0 edges is the empty circuit")
    s = next(i for i, f in enumerate(u.grid.fractions) if abs(f - p) < 1e-12)
    lines.append(f"at p = {100 * p:g}%: single {_band(u.single.faithfulness, s)}, DCD routed "
                 f"{_band(u.dcd_routed.faithfulness, s)}, DCD oracle "
                 f"{_band(u.dcd_oracle.faithfulness, s)}")
    return lines + _verdicts(u, p)


def _band(band: Band, s: int) -> str:
    from auto_circuit_dcd.metrics.uncertainty import Interval

    return interval_text(Interval(band.estimate[s], band.low[s], band.high[s]))


def verdict_text(u: RunUncertainty, v: Verdict | None) -> str:
    """A verdict's outcome, flagged when a comparison it rests on has sides of different
    edge counts."""
    if v is None:
        return "-"
    family = u.comparisons.get(CLAIM_FAMILIES.get(v.claim, ""))
    return v.outcome if family is None else _flagged(v.outcome, _at(family.comparisons, v.size))


def _verdicts(u: RunUncertainty, p: float) -> list[str]:
    """One line per claim: its verdict at ``p`` and on CPR, as ``report.json`` gives them."""
    def find(claim: str, size: float | None) -> Verdict | None:
        return next((v for v in u.verdicts if v.claim == claim and same_size(v.size, size)),
                    None)

    claims = list(dict.fromkeys(v.claim for v in u.verdicts))
    head = f"verdicts (level {1 - u.settings.level:.2g})"
    lines = [f"{head:<42} {'at ' + format(100 * p, 'g') + '%':<35} on CPR"]
    for claim in claims:
        lines.append(f"  {CLAIM_NAMES.get(claim, claim):<40} "
                     f"{verdict_text(u, find(claim, p)):<35} "
                     f"{verdict_text(u, find(claim, None))}")
    return lines


def _score_rows(report: RunReport) -> list[tuple]:
    """``(family, CPR text, CMD text)``: the values, with their intervals when the report
    has them."""
    from auto_circuit_dcd.metrics.uncertainty import Interval
    from auto_circuit_dcd.report.values import fixed, score_intervals, score_rows

    rows = []
    intervals = score_intervals(report)
    for name, cpr, cmd in score_rows(report):
        pair = intervals.get(name)
        if pair is None:
            rows.append((name, f"{fixed(cpr):>6}", f"{fixed(cmd):>6}"))
        else:
            a, b = pair
            rows.append((name, interval_text(Interval(cpr, a.low, a.high)),
                         interval_text(Interval(cmd, b.low, b.high))))
    return rows
