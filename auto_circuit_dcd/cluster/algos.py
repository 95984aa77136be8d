"""DCD as auto-circuit prune algorithms (``PruneAlgo``), for ``run_prune_algos`` and friends.

A DCD prune algorithm, given ``(model, dataloader, official_edges)``:

1. scores every example of the loader (:func:`auto_circuit_dcd.attribute`);
2. fits :class:`~auto_circuit_dcd.cluster.GroupedDiscovery` on the rows;
3. returns the circuit (``PruneScores``) of the largest cluster (label 0).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Dict, Optional, Set

import numpy as np
import torch

from auto_circuit_dcd.cluster.discovery import GroupedDiscovery

__all__ = ["largest_cluster_prune_scores", "largest_cluster_algo"]


def largest_cluster_prune_scores(
    model: Any,
    dataloader: Any,
    official_edges: Optional[Set[Any]] = None,
    method: str = "eap-ig",
    ig_steps: int = 5,
    metric: str = "max_diff",
    **params: Any,
) -> Dict[str, torch.Tensor]:
    """``PruneScores`` of the largest DCD cluster's circuit on ``dataloader``.

    ``params`` go to :class:`GroupedDiscovery` (``random_state`` defaults to 42).
    ``official_edges`` is not used.
    """
    from auto_circuit_dcd.attribution.front import attribute

    A = attribute(model, dataloader, method=method, ig_steps=ig_steps, metric=metric,
                  progress=False)
    params.setdefault("random_state", 42)
    gd = GroupedDiscovery(**params).fit(A)
    largest = A.prune_scores(np.flatnonzero(gd.labels_ == 0), model=model)
    device = next(iter(model.parameters())).device
    return {name: t.to(device) for name, t in largest.items()}


def largest_cluster_algo(key: str, method: str, name: Optional[str] = None,
                         **params: Any) -> Any:
    """An auto-circuit ``PruneAlgo`` running :func:`largest_cluster_prune_scores`."""
    from auto_circuit.prune_algos.prune_algos import PruneAlgo

    return PruneAlgo(
        key=key,
        name=name or f"DCD largest cluster ({method.upper()})",
        _short_name=f"DCD-{method.upper()}",
        func=partial(largest_cluster_prune_scores, method=method, **params),
    )
