"""The tables of selection rules in docs/choosing-options.md, from run reports.

Reads the ``report.json`` of main-job runs that differ only in ``--selection`` and prints,
per rule:

1. CPR of the single circuit, DCD routed and DCD oracle, each with its interval;
2. per size (``--sizes``): the edges each circuit held (single; the clusters'; K-random),
   the single circuit's and DCD routed's f with intervals, and per cluster its own
   circuit minus the single circuit on its group with the interval and mark (flagged
   when the two hold different numbers of edges);
3. the verdicts (a) own beats single and (c) DCD routed beats K-random routed at each
   size, and how many comparisons behind them set circuits of different edge counts (or
   an empty one) against each other.

Usage::

    auto-circuit-dcd run --selection topn --out runs/toy-topn   # and topn-prune, topn-fill, greedy
    python scripts/selection_table.py runs/toy-topn runs/toy-topn-prune runs/toy-topn-fill \\
        runs/toy-greedy --sizes 0.02,0.05,0.1,0.2
"""

from __future__ import annotations

import argparse
import sys

from auto_circuit_dcd import RunFolder, RunReport
from auto_circuit_dcd.report.summary import interval_text, same_size, size_flag, verdict_text
from auto_circuit_dcd.report.values import fixed


def _band(band, j: int) -> str:
    from auto_circuit_dcd.metrics.uncertainty import Interval

    return interval_text(Interval(band.estimate[j], band.low[j], band.high[j]))


def _cpr_row(report: RunReport) -> str:
    u = report.uncertainty
    return (f"| {report.circuit_selection.rule} | " + " | ".join(
        interval_text(c.cpr) for c in (u.single, u.dcd_routed, u.dcd_oracle)) + " |")


def _size_rows(report: RunReport, sizes: list[float]) -> list[str]:
    u = report.uncertainty
    rule = report.circuit_selection.rule
    counts = report.achieved_edge_counts
    own = u.comparisons["own_vs_single"].comparisons
    lines = []
    for p in sizes:
        j = next(i for i, f in enumerate(u.grid.fractions) if same_size(f, p))
        clusters = [f"cluster_{c.label}" for c in u.clusters]
        krand = [n for n in counts if n.startswith("k_random_")]
        edges = (f"{counts['single'][j]} / {', '.join(str(counts[c][j]) for c in clusters)}"
                 f" / {', '.join(str(counts[k][j]) for k in krand) or '-'}")
        per_cluster = []
        for c in (c for c in own if same_size(c.size, p)):
            flag = size_flag([c])
            per_cluster.append(f"{interval_text(c.difference, signed=True)} {c.mark}"
                               + (f" ({flag})" if flag else ""))
        lines.append(f"| {rule} | {100 * p:g}% | {edges} | {_band(u.single.faithfulness, j)} | "
                     f"{_band(u.dcd_routed.faithfulness, j)} | " + " | ".join(per_cluster)
                     + " |")
    return lines


def _verdict_row(report: RunReport, sizes: list[float | None]) -> str:
    u = report.uncertainty
    cells = []
    for claim in ("own beats single", "DCD beats K-random"):
        for p in sizes:
            v = next((v for v in u.verdicts if v.claim == claim and same_size(v.size, p)), None)
            cells.append("-" if v is None else verdict_text(u, v))
    return f"| {report.circuit_selection.rule} | " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="output folders of the runs (holding report.json)")
    ap.add_argument("--sizes", default="0.01,0.05,0.1", help="edge fractions to show")
    args = ap.parse_args(argv)
    sizes = [float(x) for x in args.sizes.split(",")]
    reports = [RunFolder(run).report() for run in args.runs]
    print("| rule | CPR single | CPR DCD routed | CPR DCD oracle |\n|---|---|---|---|")
    print("\n".join(_cpr_row(r) for r in reports))
    k = len(reports[0].uncertainty.clusters)
    print("\n| rule | size | edges: single / clusters / K-random | single f | DCD routed f | "
          + " | ".join(f"cluster {c.label}: own - single" for c in reports[0].uncertainty.clusters)
          + " |\n|---|---|---|---|---|" + "---|" * k)
    for r in reports:
        print("\n".join(_size_rows(r, sizes)))
    shown: list[float | None] = [*sizes, None]
    head = " | ".join(f"(a) {100 * p:g}%" if p is not None else "(a) CPR" for p in shown) + \
        " | " + " | ".join(f"(c) {100 * p:g}%" if p is not None else "(c) CPR" for p in shown)
    print(f"\n| rule | {head} |\n|---|" + "---|" * (2 * len(shown)))
    print("\n".join(_verdict_row(r, shown) for r in reports))
    print("\nsizes left out: " + "; ".join(
        f"{r.circuit_selection.rule}: {r.uncertainty.grid.reason or 'none'}" for r in reports[:1]))
    print("CPR resolution: " + ", ".join(f"{fixed(r.single.cpr)}" for r in reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
