"""Baselines in the same ``{label: circuit}`` form as ``GroupedDiscovery.circuits_``.

- :func:`single_circuit`: one circuit of all rows (EAP on the whole set: their mean).
- :func:`k_random_circuits`: the rows shuffled with a seed and split into ``k`` parts of
  equal size (sizes differ by at most one); one circuit per part.

Both build their circuits with the base algorithm the clusters use
(:func:`.circuits.rows_circuit`: the mean of the rows for EAP / EAP-IG, or any auto-circuit
prune algorithm run on the examples, given ``model`` and ``dataloader``), so DCD is
compared with the same method without clustering, not with another method.
- :func:`representative_circuits`: per cluster, the medoid example's own row (the member
  with the smallest summed Euclidean distance to the other members; ties: first).
- :func:`random_circuits`: scores drawn from U(-1, 1) per edge.

A circuit is auto-circuit ``PruneScores`` when the matrix has an edge layout (or ``model``
is given; then on the model's device), else the score vector.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch
from sklearn.utils import check_random_state

from auto_circuit_dcd.model.devices import model_device
from auto_circuit_dcd.cluster.circuits import as_rows, mean_circuit, rows_circuit

__all__ = ["single_circuit", "k_random_circuits", "random_split", "representative_circuits",
           "random_circuits", "medoid"]


def single_circuit(A: Any, model: Any = None, *, base_algo: Any = "eap",
                   dataloader: Any = None, batch_size: Optional[int] = None) -> Dict[int, Any]:
    """``{0: circuit of all rows}`` (their mean for EAP; else ``base_algo`` on all examples)."""
    X, matrix = as_rows(A)
    return {0: rows_circuit(base_algo, X, matrix, np.arange(len(X)), model=model,
                            dataloader=dataloader, batch_size=batch_size, label="single")}


def random_split(n: int, k: int, random_state: Any = 42) -> list:
    """``k`` sorted arrays of row positions: ``range(n)`` shuffled (seeded) and split into
    parts whose sizes differ by at most one."""
    if not 1 <= k <= n:
        raise ValueError(f"cannot split {n} examples into k={k} non-empty parts")
    order = check_random_state(random_state).permutation(n)
    return [np.sort(part) for part in np.array_split(order, k)]


def k_random_circuits(A: Any, k: int, random_state: Any = 42, model: Any = None, *,
                      base_algo: Any = "eap", dataloader: Any = None,
                      batch_size: Optional[int] = None) -> Dict[int, Any]:
    """``k`` circuits from a random equal split of the rows (seeded), by ``base_algo``."""
    X, matrix = as_rows(A)
    return {i: rows_circuit(base_algo, X, matrix, part, model=model, dataloader=dataloader,
                            batch_size=batch_size, label=f"k-random {i}")
            for i, part in enumerate(random_split(len(X), k, random_state))}


def medoid(X: np.ndarray, rows: Sequence[int]) -> int:
    """Row position of the medoid of ``rows`` (smallest summed distance to the others)."""
    rows = np.asarray(rows, dtype=int)
    block = X[rows]
    sq = (block ** 2).sum(1)
    d = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * block @ block.T, 0.0))
    return int(rows[int(np.argmin(d.sum(1)))])


def representative_circuits(A: Any, labels: Sequence[int], model: Any = None) -> Dict[int, Any]:
    """Per cluster label (noise ``-1`` skipped), its medoid example's own row."""
    X, matrix = as_rows(A)
    labels = np.asarray(labels)
    if labels.shape != (len(X),):
        raise ValueError(f"{labels.shape[0]} labels for {len(X)} rows")
    return {int(c): mean_circuit(X, matrix, [medoid(X, np.flatnonzero(labels == c))], model)
            for c in sorted(set(labels.tolist())) if c >= 0}


def random_circuits(A: Any, n_circuits: int = 1, random_state: Any = 42,
                    model: Any = None) -> Dict[int, Any]:
    """``n_circuits`` circuits of U(-1, 1) scores (the matrix's shape decides the edges)."""
    X, matrix = as_rows(A)
    rng = check_random_state(random_state)
    out: Dict[int, Any] = {}
    for i in range(n_circuits):
        vec = rng.uniform(-1.0, 1.0, size=X.shape[1])
        if matrix is None:
            out[i] = vec
        elif matrix.layout is None and model is None:
            out[i] = torch.as_tensor(vec, dtype=torch.float32)
        else:
            scores = matrix.layout_for(model).to_prune_scores(
                torch.as_tensor(vec, dtype=torch.float32))
            device = torch.device("cpu") if model is None else model_device(model)
            out[i] = {name: t.to(device) for name, t in scores.items()}
    return out


