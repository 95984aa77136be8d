"""Pure functions on evaluated circuits: CPR/CMD, multi-circuit and cross-faithfulness,
aggregates over test subsets, edge overlap, and cluster quality against known labels.

Nothing here runs the model except through :mod:`auto_circuit_dcd.evaluation`.
Orientation: ``CrossFaithfulness.matrix[i, j]`` is circuit ``i`` on the test set of group
``j``.
"""

from __future__ import annotations

from auto_circuit_dcd.metrics.curves import cmd, cpr
from auto_circuit_dcd.metrics.multi import (
                                            CrossFaithfulness,
                                            MultiCircuitResult,
                                            combine_circuits,
                                            cross_faithfulness,
                                            multi_circuit_faithfulness,
)
from auto_circuit_dcd.metrics.overlap import OverlapMatrix, edge_overlap, overlap_matrix, top_k_iou
from auto_circuit_dcd.metrics.quality import ClusterQuality, cluster_quality, purity

__all__ = [
    "cpr", "cmd",
    "MultiCircuitResult", "CrossFaithfulness", "combine_circuits",
    "multi_circuit_faithfulness", "cross_faithfulness",
    "OverlapMatrix", "edge_overlap", "top_k_iou", "overlap_matrix",
    "ClusterQuality", "cluster_quality", "purity",
]
