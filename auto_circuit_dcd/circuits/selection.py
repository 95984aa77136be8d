"""Edge selection by score: the top-n rule and the cumulative-mass rule, one implementation each.

Both are pure functions of float arrays in the package's edge order (numpy; torch tensors
on the CPU are accepted) and return bool masks of the same shape.

``top_mask(scores, count, ranking)``:

1. rank key: ``|s|`` (``ranking="abs"``) or ``s`` (``"signed"``: most positive first, as
   MIB ranks edges for CPR), see :data:`RANKINGS`;
2. threshold = the ``count``-th largest key among the candidate edges (all by default);
3. keep every candidate whose key is at or above it. Edges tied with the ``count``-th are
   all kept, so the circuit can hold more than ``count`` edges: the rule of auto-circuit's
   ``prune_scores_threshold`` as ``run_circuits`` applies it. ``count`` above the number of
   candidates keeps them all; ``count = 0`` keeps none.

``mass_mask(scores, gamma)``, per row of the last axis:

1. order the edges by decreasing ``|s|``, ties by lower edge index;
2. keep edges in that order while the ``|s|`` already kept is below ``gamma`` of the row's
   total (relative tolerance 1e-12, so float noise in the sum does not add an edge);
3. edges of zero score are never kept; an all-zero row keeps none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, Union

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: edge scores: a numpy array or a CPU torch tensor
Scores = Union[np.ndarray, "torch.Tensor"]

__all__ = ["Ranking", "RANKINGS", "check_ranking", "rank_key", "top_mask", "mass_mask"]

#: how edges are ranked: by ``|score|`` or by score (the keys of :data:`RANKINGS`)
Ranking = Literal["abs", "signed"]

#: ranking name -> the key edges are sorted by (largest first)
RANKINGS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "abs": np.abs,
    "signed": lambda s: s,
}

_REL_TOL = 1e-12


def _array(scores: Scores) -> np.ndarray:
    if hasattr(scores, "detach"):
        scores = scores.detach().cpu().double().numpy()
    arr = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError("edge scores contain NaN or inf: map infinite scores to finite ones "
                         "first (auto_circuit_dcd.cluster.circuits.finite_scores)")
    return arr


def check_ranking(ranking: str) -> str:
    """``ranking`` if it is a key of :data:`RANKINGS`, else a ``ValueError`` listing them."""
    if ranking not in RANKINGS:
        raise ValueError(f"ranking must be one of {sorted(RANKINGS)}, got {ranking!r}")
    return ranking


def rank_key(scores: Scores, ranking: str = "abs") -> np.ndarray:
    """The sort key of ``ranking`` (a key of :data:`RANKINGS`) applied to ``scores``."""
    return RANKINGS[check_ranking(ranking)](_array(scores))


def top_mask(scores: Scores, count: int, ranking: str = "abs",
             candidates: np.ndarray | None = None) -> np.ndarray:
    """Bool ``[n_edges]``: the top ``count`` candidate edges by ``ranking``, ties kept."""
    key = rank_key(scores, ranking)
    if key.ndim != 1:
        raise ValueError(f"top_mask takes one score vector, got shape {key.shape}")
    if int(count) != count or count < 0:
        raise ValueError(f"count must be a non-negative integer, got {count}")
    allowed = np.ones(key.shape, dtype=bool) if candidates is None else np.asarray(candidates)
    if allowed.shape != key.shape or allowed.dtype != np.bool_:
        raise ValueError(f"candidates must be a bool mask of shape {key.shape}")
    pool = key[allowed]
    count = min(int(count), pool.size)
    if count == 0:
        return np.zeros(key.shape, dtype=bool)
    threshold = np.partition(pool, pool.size - count)[pool.size - count]
    return allowed & (key >= threshold)


def mass_mask(scores: Scores, gamma: float = 0.99) -> np.ndarray:
    """Bool, shape of ``scores``: per row (last axis), the smallest edge set holding
    ``gamma`` of the row's total ``|score|`` (ties by edge index)."""
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"gamma must be in (0, 1], got {gamma}")
    mag = np.abs(_array(scores))
    if mag.ndim == 0:
        raise ValueError("mass_mask takes a score vector or a matrix of rows")
    order = np.argsort(-mag, axis=-1, kind="stable")
    sorted_mag = np.take_along_axis(mag, order, axis=-1)
    cum = np.cumsum(sorted_mag, axis=-1)
    zero = np.zeros(mag.shape[:-1] + (1,))
    total = cum[..., -1:] if mag.shape[-1] else zero
    before = np.concatenate([zero, cum[..., :-1]], axis=-1)  # |s| kept before each edge
    keep_sorted = before < gamma * total * (1 - _REL_TOL)
    mask = np.zeros(mag.shape, dtype=bool)
    np.put_along_axis(mask, order, keep_sorted, axis=-1)
    return mask
