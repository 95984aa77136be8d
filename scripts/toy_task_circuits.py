"""The table of single-task circuits on the toy model in docs/results.md, with intervals.

Circuits found on each task alone (IOI-like, induction) and on the mixture (the single
circuit), each the mean of its training rows' EAP attributions, evaluated on each task's
test split at the given sizes (``topn``, the library's default, as
``tests/test_metrics_toy.py`` does); every f with its 95% bootstrap interval over that test
split's examples (:mod:`auto_circuit_dcd.metrics.uncertainty`, the default expanded
percentile interval, 2,000 resamples, seed 0), and the edge overlap of the two task
circuits.

Usage::

    python scripts/toy_task_circuits.py --sizes 0.05,0.2
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

import auto_circuit_dcd as dcd

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit_dcd.metrics.uncertainty.families import CurveBuilder


def _one(name: str) -> CurveBuilder:
    """The curve of circuit ``name`` on every test example."""
    return lambda v: v.circuit(name)


def main(argv: list[str] | None = None) -> int:
    from auto_circuit_dcd.metrics.convention import make_convention
    from auto_circuit_dcd.metrics.uncertainty import Bootstrap, Interval, RunValues, curve_intervals
    from auto_circuit_dcd.report.summary import interval_text
    from auto_circuit_dcd.toy import toy_dataset_path

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="0.05,0.2", help="edge fractions to show")
    args = ap.parse_args(argv)
    sizes = [float(x) for x in args.sizes.split(",")]
    model = dcd.load_model("toy-two-task")
    pm, train, test = None, {}, {}
    for name in ("ioi", "induction", "mixed"):
        pm, train[name], test[name] = dcd.prepare(pm or model, toy_dataset_path(name),
                                                  batch_size=32)
    circuits = {name: dcd.Circuit.from_prune_scores(
        dcd.attribute(pm, train[name], method="eap", progress=False).prune_scores(), pm)
        for name in ("ioi", "induction", "mixed")}
    boot, conv = Bootstrap(), make_convention()
    cells = {}
    for task in ("ioi", "induction"):
        results = dcd.evaluate_circuits(pm, test[task], circuits, sizes)
        values = RunValues.from_results({conv.cpr_ranking: results}, conv)
        found = curve_intervals(values, [_one(n) for n in circuits], boot)
        for name, c in zip(circuits, found):
            b = c.faithfulness
            for j, p in enumerate(sizes):
                cells[(name, task, p)] = interval_text(Interval(b.estimate[j], b.low[j],
                                                                b.high[j]))
    heads = [f"f on {task}, {100 * p:g}%" for p in sizes for task in ("IOI", "induction")]
    print("| circuit of | " + " | ".join(heads) + " |\n|---|" + "---|" * len(heads))
    label = {"ioi": "IOI", "induction": "induction", "mixed": "the mixture (single circuit)"}
    for name in circuits:
        print(f"| {label[name]} | " + " | ".join(cells[(name, task, p)] for p in sizes
                                                  for task in ("ioi", "induction")) + " |")
    print(f"\n{boot.level:.0%} intervals ({boot.method}, {boot.n_resamples} resamples of each "
          f"test split: {len(test['ioi'].examples)} IOI and {len(test['induction'].examples)} "
          "induction prompts)")
    print("edge overlap (gamma 0.99 Jaccard) IOI / induction circuits: "
          f"{dcd.edge_overlap(circuits['ioi'], circuits['induction']):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
