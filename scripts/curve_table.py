"""The faithfulness tables of docs/results.md, with intervals, from a run's report.

Reads ``OUT/report.json`` of a main-job run and prints, as Markdown:

1. f at each size with its interval for the single circuit, DCD routed and oracle,
   K-random routed, and per cluster its own circuit and the single circuit on its routed
   test examples; the edges the single circuit and each cluster's circuit held; CPR with
   its interval in the last column;
2. per size (and on CPR) the paired comparisons own vs single per cluster and DCD routed vs
   single and vs K-random routed: the difference with its interval and the mark, flagged
   when the two sides hold different numbers of edges;
3. the verdicts (a), (b), (c) at each size and on CPR, flagged like the comparisons behind
   them.

Usage::

    python scripts/curve_table.py runs/smol
"""

from __future__ import annotations

import argparse
import sys

from auto_circuit_dcd import RunFolder
from auto_circuit_dcd.metrics.uncertainty import Interval
from auto_circuit_dcd.report.summary import (
    CLAIM_NAMES,
    interval_text,
    same_size,
    size_flag,
    verdict_text,
)


def _row(name: str, band, cpr: Interval | None) -> str:
    cells = [interval_text(Interval(e, lo, hi))
             for e, lo, hi in zip(band.estimate, band.low, band.high)]
    return f"| {name} | " + " | ".join(cells) + f" | {'' if cpr is None else interval_text(cpr)} |"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="output folder of the run (holding report.json)")
    args = ap.parse_args(argv)
    report = RunFolder(args.run).report()
    u = report.uncertainty
    if u is None:
        raise SystemExit(f"{args.run}: the report has no intervals; run the job again")
    sizes = u.grid.fractions
    head = " | ".join(f"{100 * p:g}%" for p in sizes)
    rule = "|---|" + "---|" * (len(sizes) + 1)
    comp = {c.label: max(c.composition, key=c.composition.get) if c.composition else "?"
            for c in report.dcd.clusters}
    print(f"| f [{u.settings.level:.0%} interval] | {head} | CPR |\n{rule}")
    rows = [("single circuit", u.single), ("DCD routed", u.dcd_routed),
            ("DCD oracle", u.dcd_oracle), ("K-random routed", u.k_random_routed)]
    for name, c in rows:
        if c is not None:
            print(_row(name, c.faithfulness, c.cpr))
    for c in u.clusters:
        print(_row(f"cluster {c.label} ({comp.get(c.label)}, {c.n_test} test): own circuit",
                   c.own.faithfulness, c.own.cpr))
        print(_row(f"cluster {c.label}: single circuit", c.single_on_group.faithfulness,
                   c.single_on_group.cpr))
    counts = report.achieved_edge_counts
    print(f"\n| edges held | {head} |\n|---|" + "---|" * len(sizes))
    for name in ["single"] + [f"cluster_{c.label}" for c in u.clusters]:
        print(f"| {name} | " + " | ".join(f"{n:,}" for n in counts[name]) + " |")
    print(f"\n| a - b [{u.settings.level:.0%} interval], mark | {head} | CPR |\n{rule}")
    families = [("own_vs_single", None), ("dcd_routed_vs_single", "DCD routed - single"),
                ("dcd_routed_vs_k_random_routed", "DCD routed - K-random routed")]
    for key, label in families:
        if key not in u.comparisons:
            continue
        pairs = list(dict.fromkeys((c.a, c.b) for c in u.comparisons[key].comparisons))
        for a, b in pairs:
            cells = []
            for p in [*sizes, None]:
                c = next(c for c in u.comparisons[key].comparisons
                         if (c.a, c.b) == (a, b) and same_size(c.size, p))
                flag = size_flag([c])
                cells.append(f"{interval_text(c.difference, signed=True)} {c.mark}"
                             + (f" ({flag})" if flag else ""))
            print(f"| {label or a.replace(' own', '') + ' own - single'} | "
                  + " | ".join(cells) + " |")
    print(f"\n| verdict (level {1 - u.settings.level:.2g}) | {head} | CPR |\n{rule}")
    for claim in dict.fromkeys(v.claim for v in u.verdicts):
        cells = []
        for p in [*sizes, None]:
            v = next((v for v in u.verdicts if v.claim == claim and same_size(v.size, p)), None)
            cells.append("" if v is None else verdict_text(u, v))
        print(f"| {CLAIM_NAMES.get(claim, claim)} | " + " | ".join(cells) + " |")
    for w in u.warnings:
        print(f"\nwarning: {w.message}")
    if u.grid.dropped:
        print(f"\nsizes left out: {u.grid.reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
