"""The table of selection rules in docs/choosing-options.md: CPR and f at 1/5/10% per rule, from run reports.

Reads the ``report.json`` of main-job runs that differ only in ``--selection`` and prints,
per rule: CPR (single, DCD routed, DCD oracle), f at the given sizes for the single circuit,
DCD routed and each cluster's own circuit vs the single circuit on its routed test group,
the edges the single circuit achieved there, and whether every cluster's own circuit is
above the single circuit at every evaluated size below 100% (sizes of 0 edges skipped).

Usage::

    auto-circuit-dcd run --selection topn --out runs/toy-topn   # and topn-prune, greedy
    python scripts/selection_table.py runs/toy-topn runs/toy-topn-prune runs/toy-greedy
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Dict, List, Optional

from auto_circuit_dcd import RunFolder, RunReport
from auto_circuit_dcd.report.values import fixed

#: faithfulness differences below this are not counted (the table shows 3 decimals)
TOL = 1e-3


def _rows(report: RunReport, sizes: List[float]) -> List[str]:
    cols = [report.edge_fractions.index(p) for p in sizes]
    sel, dcd = report.circuit_selection, report.dcd
    rule = sel.rule
    achieved = sel.achieved_edge_counts[sel.ranking]["single"]

    def at(curve: List[float]) -> str:
        return " | ".join(fixed(curve[j]) for j in cols)

    lines = [f"| {rule} | single circuit | {fixed(report.single.cpr)} | "
             f"{at(report.single.faithfulness)} | "
             + ", ".join(str(achieved[j]) for j in cols) + " |",
             f"| {rule} | DCD routed | {fixed(dcd.cpr.routed)} | {at(dcd.faithfulness_routed)} | |",
             f"| {rule} | DCD oracle | {fixed(dcd.cpr.oracle)} | {at(dcd.faithfulness_oracle)} | |"]
    for c in dcd.clusters:
        comp = max(c.composition, key=c.composition.get) if c.composition else "?"
        lines.append(f"| {rule} | cluster {c.label} ({comp}): own / single | "
                     f"{fixed(c.cpr_own)} | "
                     + " | ".join(f"{fixed(c.faithfulness_own[j])} / "
                                  f"{fixed(c.single_on_group[j])}" for j in cols) + " | |")
    return lines


def own_vs_single(report: RunReport) -> Dict[str, List[float]]:
    """The sizes (below 100%, at least one edge asked) where some cluster's own circuit is
    below the single circuit on its group (``"below"``), or only level with it (``"level"``,
    within 0.001, the table's resolution: empty circuits differ by float noise)."""
    asked = report.circuit_selection.requested_edge_counts
    out: Dict[str, List[float]] = {"below": [], "level": []}
    for j, p in enumerate(report.edge_fractions):
        if p >= 1.0 or asked[j] == 0:
            continue
        gaps = [(c.faithfulness_own[j], c.single_on_group[j]) for c in report.dcd.clusters]
        if any(math.isnan(o) or math.isnan(s) or o < s - TOL for o, s in gaps):
            out["below"].append(p)
        elif any(abs(o - s) <= TOL for o, s in gaps):
            out["level"].append(p)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="output folders of the runs (holding report.json)")
    ap.add_argument("--sizes", default="0.01,0.05,0.1", help="edge fractions to show")
    args = ap.parse_args(argv)
    sizes = [float(x) for x in args.sizes.split(",")]
    head = " | ".join(f"f at {p:g}" for p in sizes)
    print(f"| rule | circuits | CPR | {head} | single's edges |")
    print("|---|---|---|" + "---|" * len(sizes) + "---|")
    verdicts = []
    for run in args.runs:
        report = RunFolder(run).report()
        print("\n".join(_rows(report, sizes)))
        vs = own_vs_single(report)
        said = "yes" if not (vs["below"] or vs["level"]) else "no"
        for what, sizes_ in vs.items():
            if sizes_:
                said += f"; {what} at {', '.join(f'{p:g}' for p in sizes_)}"
        verdicts.append(f"{report.circuit_selection.rule}: every cluster's own circuit "
                        f"above the single circuit at every size below 100%: {said}")
    print("\n" + "\n".join(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
