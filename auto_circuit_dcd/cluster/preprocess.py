"""Row-wise preprocessing of the attribution matrix before reduction and clustering.

Every transform acts on each example's row alone, so new examples (``predict``) are
transformed exactly like the training rows and nothing is learned here:

- ``raw``: the scores as they are (the method's default);
- ``absolute``: ``|s|`` (sign of an edge's effect ignored);
- ``l2``: each row divided by its L2 norm (all-zero rows stay zero);
- ``sparse``: per row, keep the smallest set of edges whose cumulative ``|s|`` reaches
  ``gamma`` of the row's total ``|s|`` (largest first, ties by column;
  :func:`auto_circuit_dcd.circuits.selection.mass_mask`, the rule circuits use), zero the rest;
- ``binary``: the indicator of that same edge set (1 kept, 0 not). Euclidean distance
  between binary rows is the square root of the size of their symmetric difference;
  :func:`jaccard_distances` gives the Jaccard distance for analysis;
- ``rank``: each edge's rank by ``|s|`` within its row, scaled to [0, 1] (0: the smallest;
  ties by column). Every row is then a permutation of the same values, so Euclidean
  distance between rows is a monotone function of their Spearman correlation: only the
  order of the edges counts, not the scores' scale or tails.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from auto_circuit_dcd.circuits.selection import mass_mask

__all__ = ["PREPROCESSORS", "preprocess", "jaccard_distances"]


def _raw(X: np.ndarray, gamma: float) -> np.ndarray:
    return X


def _absolute(X: np.ndarray, gamma: float) -> np.ndarray:
    return np.abs(X)


def _l2(X: np.ndarray, gamma: float) -> np.ndarray:
    norm = np.linalg.norm(X, axis=1, keepdims=True)
    return np.divide(X, norm, out=np.zeros_like(X), where=norm > 0)


def _sparse(X: np.ndarray, gamma: float) -> np.ndarray:
    return np.where(mass_mask(X, gamma), X, 0.0)


def _binary(X: np.ndarray, gamma: float) -> np.ndarray:
    return mass_mask(X, gamma).astype(np.float64)


def _rank(X: np.ndarray, gamma: float) -> np.ndarray:
    order = np.argsort(np.abs(X), axis=1, kind="stable")
    ranks = np.empty_like(X)
    scale = 1.0 / max(X.shape[1] - 1, 1)
    np.put_along_axis(ranks, order, np.arange(X.shape[1], dtype=np.float64)[None] * scale, 1)
    return ranks


#: preprocessing name -> ``(rows, gamma) -> transformed rows`` (each row on its own)
PREPROCESSORS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "raw": _raw,
    "absolute": _absolute,
    "l2": _l2,
    "sparse": _sparse,
    "binary": _binary,
    "rank": _rank,
}


def preprocess(X: np.ndarray, method: str = "raw", gamma: float = 0.99) -> np.ndarray:
    """Apply the named row-wise transform (a key of :data:`PREPROCESSORS`)."""
    try:
        fn = PREPROCESSORS[method]
    except KeyError:
        raise ValueError(
            f"preprocessing must be one of {sorted(PREPROCESSORS)}, got {method!r}") from None
    return fn(np.asarray(X, dtype=np.float64), gamma)


def jaccard_distances(mask: np.ndarray) -> np.ndarray:
    """Pairwise Jaccard distance ``[n, n]`` between boolean rows (two empty rows: 0)."""
    m = np.asarray(mask, dtype=np.float64)
    inter = m @ m.T
    sizes = m.sum(1)
    union = sizes[:, None] + sizes[None, :] - inter
    sim = np.divide(inter, union, out=np.ones_like(inter), where=union > 0)
    return 1.0 - sim
