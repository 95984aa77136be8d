"""Grouped discovery: cluster examples by their attribution rows, one circuit per cluster.

Public names: :class:`GroupedDiscovery` (the estimator), :func:`cluster_circuits` (one
:class:`~auto_circuit_dcd.circuits.circuit.Circuit` per cluster of its labels), the baselines
(:func:`single_circuit`, :func:`k_random_circuits`, :func:`representative_circuits`,
:func:`random_circuits`), :class:`DivisiveClustering`, :func:`cluster_stability` (are the
clusters found again on resampled rows?), and :func:`registry_entries`
(the ``PruneAlgo`` objects :func:`auto_circuit_dcd.register` adds to auto-circuit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from auto_circuit_dcd.cluster.baselines import (
    k_random_circuits,
    random_circuits,
    representative_circuits,
    single_circuit,
)
from auto_circuit_dcd.cluster.circuits import cluster_circuits
from auto_circuit_dcd.cluster.discovery import GroupedDiscovery
from auto_circuit_dcd.cluster.divisive import DivisiveClustering
from auto_circuit_dcd.cluster.stability import ClusterStability, cluster_stability

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit.prune_algos.prune_algos import PruneAlgo

__all__ = [
    "GroupedDiscovery",
    "cluster_circuits",
    "DivisiveClustering",
    "single_circuit",
    "k_random_circuits",
    "representative_circuits",
    "random_circuits",
    "cluster_stability",
    "ClusterStability",
    "registry_entries",
]


def registry_entries() -> dict[str, PruneAlgo]:
    """``{PRUNE_ALGO_DICT key: PruneAlgo}``: the largest DCD cluster's circuit (EAP, EAP-IG)."""
    from auto_circuit_dcd import keys
    from auto_circuit_dcd.cluster.algos import largest_cluster_algo

    return {
        keys.ALGO_LARGEST_CLUSTER_EAP: largest_cluster_algo(
            keys.ALGO_LARGEST_CLUSTER_EAP, method="eap"),
        keys.ALGO_LARGEST_CLUSTER_EAP_IG: largest_cluster_algo(
            keys.ALGO_LARGEST_CLUSTER_EAP_IG, method="eap-ig"),
    }
