"""The README's table of selection rules: CPR and f at 1/5/10% per rule, from run reports.

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
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional


#: faithfulness differences below this are not counted (the table shows 3 decimals)
TOL = 1e-3


def _fmt(x: Optional[float]) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _rows(report: Dict[str, Any], sizes: List[float]) -> List[str]:
    fr = report["edge_fractions"]
    cols = [fr.index(p) for p in sizes]
    rule = report["circuit_selection"]["rule"]
    dcd = report["dcd"]
    achieved = report["circuit_selection"]["achieved_edge_counts"][
        report["circuit_selection"]["ranking"]]["single"]

    def at(curve: List[Optional[float]]) -> str:
        return " | ".join(_fmt(curve[j]) for j in cols)

    lines = [f"| {rule} | single circuit | {_fmt(report['single']['cpr'])} | "
             f"{at(report['single']['faithfulness'])} | "
             + ", ".join(str(achieved[j]) for j in cols) + " |",
             f"| {rule} | DCD routed | {_fmt(dcd['cpr']['routed'])} | "
             f"{at(dcd['faithfulness_routed'])} | |",
             f"| {rule} | DCD oracle | {_fmt(dcd['cpr']['oracle'])} | "
             f"{at(dcd['faithfulness_oracle'])} | |"]
    for c in dcd["clusters"]:
        comp = max(c["composition"], key=c["composition"].get) if c["composition"] else "?"
        lines.append(f"| {rule} | cluster {c['label']} ({comp}): own / single | "
                     f"{_fmt(c.get('cpr_own'))} | "
                     + " | ".join(f"{_fmt(c['faithfulness_own'][j])} / "
                                  f"{_fmt(c['single_on_group'][j])}" for j in cols) + " | |")
    return lines


def own_vs_single(report: Dict[str, Any]) -> Dict[str, List[float]]:
    """The sizes (below 100%, at least one edge asked) where some cluster's own circuit is
    below the single circuit on its group (``"below"``), or only level with it (``"level"``,
    within 0.001, the table's resolution: empty circuits differ by float noise)."""
    fr = report["edge_fractions"]
    asked = report["circuit_selection"]["requested_edge_counts"]
    out: Dict[str, List[float]] = {"below": [], "level": []}
    for j, p in enumerate(fr):
        if p >= 1.0 or asked[j] == 0:
            continue
        gaps = [(c["faithfulness_own"][j], c["single_on_group"][j])
                for c in report["dcd"]["clusters"]]
        if any(o is None or s is None or o < s - TOL for o, s in gaps):
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
        report = json.loads((Path(run) / "report.json").read_text())
        print("\n".join(_rows(report, sizes)))
        vs = own_vs_single(report)
        said = "yes" if not (vs["below"] or vs["level"]) else "no"
        for what, sizes_ in vs.items():
            if sizes_:
                said += f"; {what} at {', '.join(f'{p:g}' for p in sizes_)}"
        verdicts.append(f"{report['circuit_selection']['rule']}: every cluster's own circuit "
                        f"above the single circuit at every size below 100%: {said}")
    print("\n" + "\n".join(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
