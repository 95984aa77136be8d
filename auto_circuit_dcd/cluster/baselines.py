"""Baselines, as ``{label: Circuit}`` like :func:`.circuits.cluster_circuits`.

- :func:`single_circuit`: one circuit of all rows (EAP on the whole set: their mean).
- :func:`k_random_circuits`: the rows shuffled with a seed and split into ``k`` parts of
  equal size (sizes differ by at most one); one circuit per part.

Both build their circuits with the base algorithm the clusters use
(:class:`.circuits.CircuitBuilder`: the mean of the rows for EAP / EAP-IG, or any auto-circuit
prune algorithm run on the examples, given ``model`` and ``dataloader``), so DCD is
compared with the same method without clustering, not with another method.

- :func:`representative_circuits`: per cluster, the medoid example's own row (the member
  with the smallest summed Euclidean distance to the other members; ties: first).
- :func:`random_circuits`: scores drawn from U(-1, 1) per edge.

Every circuit is a :class:`~auto_circuit_dcd.circuits.circuit.Circuit` over the rows' edges:
those of the ``AttributionMatrix`` (which carries its layout), or of ``model``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np
from sklearn.utils import check_random_state

from auto_circuit_dcd.arrays import Indices
from auto_circuit_dcd.circuits.circuit import Circuit
from auto_circuit_dcd.cluster.circuits import BaseAlgo, CircuitBuilder, Rows

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit.utils.patchable_model import PatchableModel

    from auto_circuit_dcd.data import ExampleLoader

__all__ = ["single_circuit", "k_random_circuits", "random_split", "representative_circuits",
           "random_circuits", "medoid"]

#: a seed or ``RandomState`` (scikit-learn's ``check_random_state``)
RandomState = Optional["int | np.random.RandomState"]


def single_circuit(A: Rows, model: PatchableModel | None = None, *,
                   base_algo: BaseAlgo = "eap", dataloader: ExampleLoader | None = None,
                   batch_size: int | None = None) -> dict[int, Circuit]:
    """``{0: circuit of all rows}`` (their mean for EAP; else ``base_algo`` on all examples)."""
    build = CircuitBuilder.of(A, base_algo=base_algo, model=model, dataloader=dataloader,
                              batch_size=batch_size)
    return {0: build(np.arange(build.n_rows), "single")}


def random_split(n: int, k: int, random_state: RandomState = 42) -> list[np.ndarray]:
    """``k`` sorted arrays of row positions: ``range(n)`` shuffled (seeded) and split into
    parts whose sizes differ by at most one."""
    if not 1 <= k <= n:
        raise ValueError(f"cannot split {n} examples into k={k} non-empty parts")
    order = check_random_state(random_state).permutation(n)
    return [np.sort(part) for part in np.array_split(order, k)]


def k_random_circuits(A: Rows, k: int, random_state: RandomState = 42,
                      model: PatchableModel | None = None, *, base_algo: BaseAlgo = "eap",
                      dataloader: ExampleLoader | None = None,
                      batch_size: int | None = None) -> dict[int, Circuit]:
    """``k`` circuits from a random equal split of the rows (seeded), by ``base_algo``."""
    build = CircuitBuilder.of(A, base_algo=base_algo, model=model, dataloader=dataloader,
                              batch_size=batch_size)
    return {i: build(part, f"k_random_{i}")
            for i, part in enumerate(random_split(build.n_rows, k, random_state))}


def medoid(X: np.ndarray, rows: Indices) -> int:
    """Row position of the medoid of ``rows`` (smallest summed distance to the others)."""
    idx = np.asarray(rows, dtype=int)
    block = X[idx]
    sq = (block ** 2).sum(1)
    d = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * block @ block.T, 0.0))
    return int(idx[int(np.argmin(d.sum(1)))])


def representative_circuits(A: Rows, labels: Indices,
                            model: PatchableModel | None = None) -> dict[int, Circuit]:
    """Per cluster label (noise ``-1`` skipped), its medoid example's own row."""
    build = CircuitBuilder.of(A, model=model)
    lab = np.asarray(labels)
    if lab.shape != (build.n_rows,):
        raise ValueError(f"{lab.shape[0]} labels for {build.n_rows} rows")
    return {int(c): build([medoid(build.X, np.flatnonzero(lab == c))],
                          f"representative_{c}")
            for c in sorted(set(lab.tolist())) if c >= 0}


def random_circuits(A: Rows, n_circuits: int = 1, random_state: RandomState = 42,
                    model: PatchableModel | None = None) -> dict[int, Circuit]:
    """``n_circuits`` circuits of U(-1, 1) scores over the rows' edges."""
    build = CircuitBuilder.of(A, model=model)
    rng = check_random_state(random_state)
    return {i: build.from_scores(rng.uniform(-1.0, 1.0, size=build.X.shape[1]), f"random_{i}")
            for i in range(n_circuits)}
