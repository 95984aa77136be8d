"""Measuring circuits: faithfulness curves, CPR/CMD, multi-circuit and cross-faithfulness,
edge overlap, and cluster quality against known labels.

Orientation: ``FaithfulnessResult.mu_circuit`` is ``[n_examples, n_fractions]``;
``CrossFaithfulness.matrix[i, j]`` is circuit ``i`` on the test set of group ``j``.
:func:`registry_entries` gives the ``PruneMetric`` objects that
:func:`auto_circuit_dcd.register` adds to auto-circuit.
"""

from __future__ import annotations

from typing import Any, Dict

from .curves import cmd, cpr
from .ablation import ABLATIONS
from .faithfulness import BACKENDS, MIB_GRID, FaithfulnessResult, evaluate_circuits, faithfulness
from .multi import (CrossFaithfulness, MultiCircuitResult, combine_circuits, cross_faithfulness,
                    multi_circuit_faithfulness)
from .overlap import OverlapMatrix, edge_overlap, overlap_matrix, top_k_iou
from .quality import ClusterQuality, cluster_quality, purity

__all__ = [
    "MIB_GRID", "ABLATIONS", "BACKENDS", "FaithfulnessResult", "faithfulness", "evaluate_circuits",
    "cpr", "cmd",
    "MultiCircuitResult", "CrossFaithfulness", "combine_circuits",
    "multi_circuit_faithfulness", "cross_faithfulness",
    "OverlapMatrix", "edge_overlap", "top_k_iou", "overlap_matrix",
    "ClusterQuality", "cluster_quality", "purity",
    "registry_entries",
]


def registry_entries() -> Dict[str, Any]:
    """``{PRUNE_METRIC_DICT key: PruneMetric}``: faithfulness with max-wrong and avg-wrong mu."""
    from .. import keys
    from .prune_metric import faithfulness_prune_metric

    return {
        keys.METRIC_FAITHFULNESS_MAX_DIFF: faithfulness_prune_metric(
            keys.METRIC_FAITHFULNESS_MAX_DIFF, "max_diff"),
        keys.METRIC_FAITHFULNESS_AVG_DIFF: faithfulness_prune_metric(
            keys.METRIC_FAITHFULNESS_AVG_DIFF, "avg_diff"),
    }
