"""Uncertainty of faithfulness numbers: bootstrap intervals over test examples, paired
comparisons, the method's claims as verdicts, and fair sizes. Pure functions on evaluated
circuits' per-example values (``FaithfulnessResult.mu_circuit``); no model pass.

- :mod:`.bootstrap`: the resampling plan (:class:`Bootstrap`), statistics as ratios of
  weighted sums, BCa and percentile intervals;
- :mod:`.paired`: the sign-flip test of paired differences, Holm and Benjamini-Hochberg;
- :mod:`.sizes`: sizes that ask for no edge left out (:func:`size_grid`), notes on unequal
  sizes;
- :mod:`.values`: per-example values of a run and the curves made of them (one circuit,
  routed, oracle);
- :mod:`.families`: curves, CPR, CMD and cross-faithfulness with intervals; comparisons;
- :mod:`.verdicts`: the claims as verdicts; too-few-examples warnings;
- :mod:`.run`: :func:`run_uncertainty`, all of it for one run.

``docs/uncertainty.md`` says what is resampled, which interval, test and correction, and
the verdict rules with their thresholds.
"""

from __future__ import annotations

from auto_circuit_dcd.metrics.uncertainty.bootstrap import (
                                                            INTERVALS,
                                                            Bootstrap,
                                                            Interval,
                                                            Replicates,
                                                            ratio_replicates,
)
from auto_circuit_dcd.metrics.uncertainty.families import (
                                                            Band,
                                                            Comparison,
                                                            ComparisonFamily,
                                                            CrossIntervals,
                                                            CurveIntervals,
                                                            RunValues,
                                                            compare,
                                                            cross_intervals,
                                                            curve_intervals,
)
from auto_circuit_dcd.metrics.uncertainty.paired import (
                                                            CORRECTIONS,
                                                            benjamini_hochberg,
                                                            holm,
                                                            sign_flip_pvalues,
)
from auto_circuit_dcd.metrics.uncertainty.run import (
                                                            ClusterIntervals,
                                                            RunUncertainty,
                                                            UncertaintySettings,
                                                            run_uncertainty,
)
from auto_circuit_dcd.metrics.uncertainty.sizes import SizeGrid, size_grid, size_note
from auto_circuit_dcd.metrics.uncertainty.values import Curve, TestValues
from auto_circuit_dcd.metrics.uncertainty.verdicts import (
                                                            OUTCOMES,
                                                            Evidence,
                                                            SampleSizeWarning,
                                                            Thresholds,
                                                            Verdict,
                                                            sample_size_warning,
                                                            separate_mechanisms,
                                                            verdicts_from_comparisons,
)

__all__ = [
    "Bootstrap", "Interval", "Replicates", "INTERVALS", "ratio_replicates",
    "sign_flip_pvalues", "holm", "benjamini_hochberg", "CORRECTIONS",
    "SizeGrid", "size_grid", "size_note",
    "TestValues", "Curve", "RunValues",
    "Band", "CurveIntervals", "CrossIntervals", "Comparison", "ComparisonFamily",
    "curve_intervals", "cross_intervals", "compare",
    "Thresholds", "Evidence", "Verdict", "SampleSizeWarning", "OUTCOMES",
    "verdicts_from_comparisons", "separate_mechanisms", "sample_size_warning",
    "UncertaintySettings", "ClusterIntervals", "RunUncertainty", "run_uncertainty",
]
