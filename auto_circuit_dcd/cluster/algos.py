"""DCD as auto-circuit prune algorithms (``PruneAlgo``), for ``run_prune_algos`` and friends.

A DCD prune algorithm, given ``(model, dataloader, official_edges)``:

1. scores every example of the loader (:func:`auto_circuit_dcd.attribute`);
2. fits :class:`~auto_circuit_dcd.cluster.GroupedDiscovery` on the rows;
3. builds the largest cluster's (label 0) :class:`~auto_circuit_dcd.circuits.circuit.Circuit`
   (:func:`~auto_circuit_dcd.cluster.circuits.cluster_circuits`) and hands it to auto-circuit
   as ``PruneScores`` on the model's device.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from auto_circuit_dcd.cluster.circuits import BaseAlgo, cluster_circuits
from auto_circuit_dcd.cluster.discovery import GroupedDiscovery

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit.data import PromptDataLoader
    from auto_circuit.prune_algos.prune_algos import PruneAlgo
    from auto_circuit.types import Edge
    from auto_circuit.utils.patchable_model import PatchableModel

__all__ = ["largest_cluster_prune_scores", "largest_cluster_algo"]


def largest_cluster_prune_scores(
    model: PatchableModel,
    dataloader: PromptDataLoader,
    official_edges: set[Edge] | None = None,
    method: str = "eap-ig",
    ig_steps: int = 5,
    metric: str = "max_diff",
    base_algo: BaseAlgo = "eap",
    base_algo_batch_size: int | None = None,
    **params: Any,
) -> dict[str, torch.Tensor]:
    """``PruneScores`` of the largest DCD cluster's circuit on ``dataloader``.

    ``params`` go to :class:`GroupedDiscovery` (``random_state`` defaults to 42);
    ``base_algo`` builds the cluster's circuit (:func:`cluster_circuits`; the mean of its
    rows by default; another algorithm needs an ``ExampleLoader``). ``official_edges`` is
    not used.
    """
    from auto_circuit_dcd.attribution.front import attribute
    from auto_circuit_dcd.model.devices import model_device

    A = attribute(model, dataloader, method=method, ig_steps=ig_steps, metric=metric,
                  progress=False)
    params.setdefault("random_state", 42)
    labels = GroupedDiscovery(**params).fit(A).labels_
    largest = np.where(np.asarray(labels) == 0, 0, -1)  # the other clusters need no circuit
    circuit = cluster_circuits(A, largest, base_algo=base_algo, model=model,
                               dataloader=dataloader, batch_size=base_algo_batch_size)[0]
    return circuit.to_prune_scores(device=model_device(model))  # the hand-off to auto-circuit


def largest_cluster_algo(key: str, method: str, name: str | None = None,
                         **params: Any) -> PruneAlgo:
    """An auto-circuit ``PruneAlgo`` running :func:`largest_cluster_prune_scores`."""
    from auto_circuit.prune_algos.prune_algos import PruneAlgo

    return PruneAlgo(
        key=key,
        name=name or f"DCD largest cluster ({method.upper()})",
        _short_name=f"DCD-{method.upper()}",
        func=partial(largest_cluster_prune_scores, method=method, **params),
    )
