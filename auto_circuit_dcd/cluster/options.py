"""The clustering options' allowed values, declared once as ``Literal`` types.

:class:`~auto_circuit_dcd.cluster.discovery.GroupedDiscovery` takes them and the main job's
:class:`~auto_circuit_dcd.job.config.RunConfig` offers them; this module imports nothing,
so the command line's ``--help`` reads them without loading scikit-learn.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["ClustererName", "Preprocessing", "KRule", "Reduction"]

ClustererName = Literal["auto", "agglomerative", "divisive", "kmeans", "hdbscan"]
#: ``"auto"`` (the space chosen from the data) or a space of :data:`.preprocess.PREPROCESSORS`
Preprocessing = Literal["auto", "raw", "absolute", "l2", "sparse", "binary", "rank"]
KRule = Literal["silhouette", "largest", "smallest", "median", "elbow", "gap"]
Reduction = Literal["svd", "pca", "none"]
