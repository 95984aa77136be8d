"""Work on a saved attribution matrix in row chunks, never holding it whole in memory.

For matrices of many examples on large graphs (Llama-3.1-8B has about 1.6 million edges:
1,000 examples are 6.4 GB in float32), clustering needs only a low-dimensional
projection of the rows and, afterwards, each cluster's mean row:

1. :func:`reduce_in_chunks` fits ``IncrementalPCA`` on chunks of rows read straight from
   ``scores.safetensors`` and returns the ``[n_examples, n_components]`` projection;
2. fit :class:`~auto_circuit_dcd.GroupedDiscovery` on that array (``reduction="none"``);
3. :func:`cluster_means_in_chunks` sums each cluster's rows chunk by chunk, giving the
   per-cluster mean vectors, i.e. the EAP-family circuits (``layout.to_prune_scores``).

Peak memory is one chunk of rows plus the projection, whatever the number of examples.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from auto_circuit_dcd.arrays import Indices

__all__ = ["iter_row_chunks", "reduce_in_chunks", "cluster_means_in_chunks"]


def _scores_file(path: str | Path) -> Path:
    from auto_circuit_dcd.attribution.matrix import SCORES_FILE

    f = Path(path) / SCORES_FILE
    if not f.exists():
        raise FileNotFoundError(f"{f} not found: give the folder written by AttributionMatrix.save")
    return f


def iter_row_chunks(path: str | Path, chunk_rows: int = 1024) -> Iterator[tuple[int, np.ndarray]]:
    """``(first_row, float64 array [rows, n_edges])`` for consecutive chunks of a saved matrix."""
    from safetensors import safe_open

    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    with safe_open(str(_scores_file(path)), framework="pt") as f:
        sl = f.get_slice("scores")
        n = sl.get_shape()[0]
        for start in range(0, n, chunk_rows):
            yield start, sl[start:start + chunk_rows].double().numpy()


def reduce_in_chunks(path: str | Path, n_components: int = 20,
                     chunk_rows: int = 1024) -> np.ndarray:
    """PCA projection ``[n_examples, n_components]`` of a saved matrix, fitted chunk by chunk.

    ``IncrementalPCA`` needs at least ``n_components`` rows per step: chunks have at least
    that many, and a shorter last chunk is fitted together with the one before it.
    """
    from sklearn.decomposition import IncrementalPCA

    chunk_rows = max(int(chunk_rows), int(n_components))
    ipca = IncrementalPCA(n_components=n_components)
    prev = None  # one chunk of look-ahead: a short last chunk is fitted with the one before
    for _, rows in iter_row_chunks(path, chunk_rows):
        if prev is not None and len(rows) < n_components:
            prev = np.vstack([prev, rows])
            continue
        if prev is not None:
            ipca.partial_fit(prev)
        prev = rows
    if prev is None or len(prev) < n_components:
        raise ValueError(f"the matrix has fewer rows than n_components={n_components}")
    ipca.partial_fit(prev)
    parts = [ipca.transform(rows) for _, rows in iter_row_chunks(path, chunk_rows)]
    return np.vstack(parts)


def cluster_means_in_chunks(path: str | Path, labels: Indices,
                            chunk_rows: int = 1024) -> dict[int, torch.Tensor]:
    """Mean row ``[n_edges]`` of each cluster label (``-1``, noise, is skipped)."""
    lab_all = np.asarray(labels)
    sums: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    seen = 0
    for start, rows in iter_row_chunks(path, chunk_rows):
        lab = lab_all[start:start + len(rows)]
        if len(lab) != len(rows):
            raise ValueError(f"{len(lab_all)} labels for a matrix with more rows")
        for c in np.unique(lab):
            if c == -1:
                continue
            block = rows[lab == c]
            sums[int(c)] = sums.get(int(c), 0) + block.sum(0)
            counts[int(c)] = counts.get(int(c), 0) + len(block)
        seen += len(rows)
    if seen != len(lab_all):
        raise ValueError(f"{len(lab_all)} labels for a matrix of {seen} rows")
    return {c: torch.from_numpy(sums[c] / counts[c]).float() for c in sorted(sums)}
