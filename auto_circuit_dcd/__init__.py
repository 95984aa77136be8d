"""auto-circuit-dcd: Data-driven Circuit Discovery on top of auto-circuit.

Score every example separately (:func:`attribute`), cluster the examples by how the model
processes them (:class:`GroupedDiscovery`), find one circuit per cluster, and measure
them against a single circuit. Importing this package is fast and changes nothing: the
public names below are loaded on first use, and nothing is registered with auto-circuit
until :func:`register` is called.
"""

from __future__ import annotations

from auto_circuit_dcd.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # models and data
    "load_model": "auto_circuit_dcd.model.load",
    "make_patchable": "auto_circuit_dcd.model.load",
    "prepare": "auto_circuit_dcd.data",
    "make_loader": "auto_circuit_dcd.data",
    "load_examples": "auto_circuit_dcd.data",
    "ExampleLoader": "auto_circuit_dcd.data",
    "DatasetError": "auto_circuit_dcd.data",
    # attribution
    "attribute": "auto_circuit_dcd.attribution.front",
    "AttributionMatrix": "auto_circuit_dcd.attribution.matrix",
    "sorted_edges": "auto_circuit_dcd.model.edges",
    "reduce_in_chunks": "auto_circuit_dcd.attribution.streaming",
    "cluster_means_in_chunks": "auto_circuit_dcd.attribution.streaming",
    # circuits and their selection rules
    "Circuit": "auto_circuit_dcd.circuits.circuit",
    "SELECTIONS": "auto_circuit_dcd.circuits.circuit",
    "Convention": "auto_circuit_dcd.metrics.convention",
    "MIB_PARITY": "auto_circuit_dcd.metrics.convention",
    "make_convention": "auto_circuit_dcd.metrics.convention",
    "EdgeGraph": "auto_circuit_dcd.circuits.graph",
    # grouped discovery and its baselines
    "GroupedDiscovery": "auto_circuit_dcd.cluster",
    "cluster_circuits": "auto_circuit_dcd.cluster",
    "cluster_stability": "auto_circuit_dcd.cluster",
    "ClusterStability": "auto_circuit_dcd.cluster",
    "single_circuit": "auto_circuit_dcd.cluster",
    "k_random_circuits": "auto_circuit_dcd.cluster",
    "representative_circuits": "auto_circuit_dcd.cluster",
    "random_circuits": "auto_circuit_dcd.cluster",
    # measuring circuits
    "MIB_GRID": "auto_circuit_dcd.evaluation",
    "faithfulness": "auto_circuit_dcd.evaluation",
    "evaluate_circuits": "auto_circuit_dcd.evaluation",
    "multi_circuit_faithfulness": "auto_circuit_dcd.metrics",
    "combine_circuits": "auto_circuit_dcd.metrics",
    "cross_faithfulness": "auto_circuit_dcd.metrics",
    "edge_overlap": "auto_circuit_dcd.metrics",
    "top_k_iou": "auto_circuit_dcd.metrics",
    "overlap_matrix": "auto_circuit_dcd.metrics",
    "cluster_quality": "auto_circuit_dcd.metrics",
    "cpr": "auto_circuit_dcd.metrics",
    "cmd": "auto_circuit_dcd.metrics",
    # what each cluster is
    "describe_clusters": "auto_circuit_dcd.explain",
    "ClusterDescriptions": "auto_circuit_dcd.explain",
    # the main job and its report
    "RunConfig": "auto_circuit_dcd.job.config",
    "run": "auto_circuit_dcd.job.pipeline",
    "RunReport": "auto_circuit_dcd.report.records",
    "RunFolder": "auto_circuit_dcd.job.run_folder",
    "write_html": "auto_circuit_dcd.report",
    # datasets
    "make_dataset": "auto_circuit_dcd.tasks",
    # several processes (torchrun, srun)
    "process_group": "auto_circuit_dcd.distributed",
    # registration with auto-circuit
    "register": "auto_circuit_dcd.registry",
    # errors the user can fix (the command prints them in one line)
    "UserError": "auto_circuit_dcd.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


__getattr__, __dir__ = lazy_exports("auto_circuit_dcd", globals(), _EXPORTS)
