"""Evaluation: the engines that run the model to measure circuits.

- :mod:`.faithfulness`: :func:`evaluate_circuits` / :func:`faithfulness`, every circuit at
  every size on a test set (``FaithfulnessResult.mu_circuit`` is ``[n_examples,
  n_fractions]``), with the backend chosen per model;
- :mod:`.patched`: the flag-free patched forward (the default backend);
- :mod:`.patch_mode`: auto-circuit's own patch mode (the reference backend);
- :mod:`.ablation`: the value each source takes on an edge outside the circuit;
- :mod:`.prune_metric`: faithfulness as auto-circuit ``PruneMetric`` objects
  (:func:`registry_entries`, added by :func:`auto_circuit_dcd.register`).
"""

from __future__ import annotations

from typing import Any

from auto_circuit_dcd.evaluation.ablation import ABLATIONS
from auto_circuit_dcd.evaluation.faithfulness import (
    BACKENDS,
    MIB_GRID,
    FaithfulnessResult,
    evaluate_circuits,
    faithfulness,
)

__all__ = ["MIB_GRID", "ABLATIONS", "BACKENDS", "FaithfulnessResult", "faithfulness",
           "evaluate_circuits", "registry_entries"]


def registry_entries() -> dict[str, Any]:
    """``{PRUNE_METRIC_DICT key: PruneMetric}``: faithfulness with max-wrong and avg-wrong mu."""
    from auto_circuit_dcd import keys
    from auto_circuit_dcd.evaluation.prune_metric import faithfulness_prune_metric

    return {
        keys.METRIC_FAITHFULNESS_MAX_DIFF: faithfulness_prune_metric(
            keys.METRIC_FAITHFULNESS_MAX_DIFF, "max_diff"),
        keys.METRIC_FAITHFULNESS_AVG_DIFF: faithfulness_prune_metric(
            keys.METRIC_FAITHFULNESS_AVG_DIFF, "avg_diff"),
    }
