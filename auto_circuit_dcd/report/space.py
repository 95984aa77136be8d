"""The clustering space and the methods of a run as sentences, for the page and the summary.

Which method's rows made the clusters and which built the circuits
(:class:`~auto_circuit_dcd.report.records.CircuitSelection`), the space the rows were
clustered in, and, when the space search's choice was a near tie
(:class:`~auto_circuit_dcd.report.records.ClusteringSpace`), a sentence naming the space
that nearly won, by what margin, and the flag that reruns the job in it.
"""

from __future__ import annotations

from auto_circuit_dcd.report.records import RunReport

__all__ = ["cluster_method", "circuit_method", "methods_text", "space_text", "near_tie_text"]


def cluster_method(report: RunReport) -> str:
    """The attribution method whose rows made the clusters."""
    return report.circuit_selection.cluster_method or report.method


def circuit_method(report: RunReport) -> str:
    """What built every circuit (each cluster's, the single and the K-random ones)."""
    sel = report.circuit_selection
    return sel.circuit_method or sel.base_algo


def methods_text(report: RunReport) -> str:
    """``clusters from eap rows, circuits by eap-ig``."""
    return f"clusters from {cluster_method(report)} rows, circuits by {circuit_method(report)}"


def space_text(report: RunReport) -> str | None:
    """The space the rows were clustered in and how it was chosen (None in reports that do
    not record it)."""
    s = report.clustering_space
    if s is None:
        return None
    if s.asked != "auto":
        return f"clustering space: {s.space} (--preprocessing {s.asked}), {s.clusterer}"
    if s.one_cluster:
        return (f"clustering space: no candidate space showed stable groups "
                f"({len(s.candidates)} candidates): one cluster")
    return (f"clustering space: {s.space}, {s.clusterer} (chosen from the rows by subsample "
            f"stability among {len(s.candidates)} candidates)")


def near_tie_text(report: RunReport) -> str | None:
    """What to do about a near tie between spaces (None when there was none)."""
    s = report.clustering_space
    if s is None or not s.near_tie or s.runner_up_space is None:
        return None
    margin = "n/a" if s.margin is None else f"{s.margin:.3f}"
    se = "" if s.margin_se is None else f" (standard error {s.margin_se:.3f})"
    return (f"near tie: the {s.runner_up_space} space ({s.runner_up_clusterer}) groups the "
            f"examples differently and its stability is only {margin}{se} below the chosen "
            f"{s.space} space's; to see its clusters, rerun with --preprocessing "
            f"{s.runner_up_space}")
