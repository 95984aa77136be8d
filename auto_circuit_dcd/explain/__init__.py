"""What each cluster is: exemplars, the per-prompt fields that go with the clusters, the
edges and nodes that set each cluster apart, and how the clusters' circuits differ.

:func:`describe_clusters` computes all of it from the attribution matrix, the fitted
clustering and the prompts, without running the model, and returns a typed
:class:`~auto_circuit_dcd.explain.records.ClusterDescriptions` (JSON through
:mod:`auto_circuit_dcd.schema`). :func:`describe_in_words` says it in sentences.
"""

from __future__ import annotations

from auto_circuit_dcd.explain.describe import describe_clusters
from auto_circuit_dcd.explain.records import ClusterDescriptions
from auto_circuit_dcd.explain.words import describe_in_words

__all__ = ["describe_clusters", "describe_in_words", "ClusterDescriptions"]
