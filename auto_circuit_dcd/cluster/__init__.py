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

from auto_circuit_dcd.lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit.prune_algos.prune_algos import PruneAlgo

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

#: public name -> the module that defines it (loaded on first use, so that importing a light
#: module of this package, such as :mod:`.options`, loads no scikit-learn)
_EXPORTS: dict[str, str] = {
    "GroupedDiscovery": "auto_circuit_dcd.cluster.discovery",
    "cluster_circuits": "auto_circuit_dcd.cluster.circuits",
    "DivisiveClustering": "auto_circuit_dcd.cluster.divisive",
    "single_circuit": "auto_circuit_dcd.cluster.baselines",
    "k_random_circuits": "auto_circuit_dcd.cluster.baselines",
    "representative_circuits": "auto_circuit_dcd.cluster.baselines",
    "random_circuits": "auto_circuit_dcd.cluster.baselines",
    "cluster_stability": "auto_circuit_dcd.cluster.stability",
    "ClusterStability": "auto_circuit_dcd.cluster.stability",
}

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


__getattr__, __dir__ = lazy_exports("auto_circuit_dcd.cluster", globals(), _EXPORTS)
