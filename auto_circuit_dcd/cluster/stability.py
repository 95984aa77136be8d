"""Cluster stability: do the same groups come back when the training rows are resampled?

Silhouette, elbow and gap say which k fits best; they do not say whether the clusters are
a property of the data or of this sample. ``cluster_stability(gd, A)``:

1. draw ``n_resamples`` sets of row positions (:data:`RESAMPLERS`): subsamples without
   replacement of ``fraction`` of the rows (default 0.8), or bootstrap samples with
   replacement (default as many rows as there are);
2. cluster each set's rows again as the full fit did (:func:`.partition.partition`: the k=1
   test, the clusterers, k chosen by the same rule), in the space the full fit chose and
   its reduced coordinates (``gd.embedding_``): a refit costs clustering time only, no
   preprocessing or SVD of the edge scores (the rows' coordinates are those of the full
   fit's SVD; the gap statistic's reference sets are drawn and clustered once for all
   refits, :class:`.select_k.ReferenceCurves`). ``clusterer="chosen"`` refits with the
   clusterer the full fit chose where it chose among several (``"auto"``), which costs one
   clusterer's fit instead of all three;
3. ARI of each resample's labels against the full fit's labels on the rows it drew (each
   distinct row once; HDBSCAN's noise label ``-1`` counts as a label);
4. per cluster ``c`` of the full fit, averaged over the resamples in which it has members:
   ``co_assignment[c]``, the share of pairs of its drawn members that the resample puts in
   one cluster (noise is in none; a split halves it, a merge with another cluster does
   not lower it), and ``jaccard[c]``, the Jaccard index of its drawn members with the
   resample cluster that matches them best (Hennig 2007; lowered by splits and merges).

Well-separated groups give ARI, co-assignment and Jaccard near 1; a partition imposed on
structureless data moves with the sample and scores low. A full fit with one cluster that
stays one cluster scores 1 (the ARI of two one-cluster labellings). Where the space search
of ``preprocessing="auto"`` found no space with groups, the refits are one cluster too (1 by
construction): how far each space was from showing groups is in
``gd.space_selection_``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import (
    TYPE_CHECKING,
    Annotated,
    Literal,
    NamedTuple,
)

import numpy as np
from sklearn.metrics import adjusted_rand_score
from sklearn.utils import check_random_state

from auto_circuit_dcd.cluster.circuits import as_rows
from auto_circuit_dcd.cluster.clusterers import PATH_CLUSTERERS
from auto_circuit_dcd.schema import Record

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit_dcd.cluster.circuits import Rows
    from auto_circuit_dcd.cluster.discovery import GroupedDiscovery

__all__ = ["RESAMPLERS", "ClusterStability", "cluster_stability", "draw_rows",
           "resample_stability"]


class Resampler(NamedTuple):
    """How one resample's row positions are drawn; its default and largest size (shares of
    the rows)."""

    draw: Callable[[np.random.RandomState, int, int], np.ndarray]
    default_fraction: float
    max_fraction: float


def _subsample(rng: np.random.RandomState, n: int, size: int) -> np.ndarray:
    return np.sort(rng.choice(n, size=size, replace=False))


def _bootstrap(rng: np.random.RandomState, n: int, size: int) -> np.ndarray:
    return np.sort(rng.randint(0, n, size=size))


#: resampling name -> how rows are drawn
RESAMPLERS: dict[str, Resampler] = {
    "subsample": Resampler(_subsample, 0.8, 1.0),
    "bootstrap": Resampler(_bootstrap, 1.0, math.inf),
}


@dataclass(frozen=True)
class ClusterStability(Record):
    """Stability of a fitted clustering under resampling of its rows.

    The run report's ``stability`` (JSON form by :mod:`auto_circuit_dcd.schema`).

    Attributes:
        method, fraction: how rows were drawn (``fraction`` of the rows per resample).
        n_resamples, ari_mean, ari_std: computed from ``ari``.
        ari: ``[n_resamples]`` ARI of each resample's labels vs the full fit's.
        n_clusters: ``[n_resamples]`` clusters each resample found.
        co_assignment: ``{cluster: share of its member pairs kept together}`` (mean over
            resamples; NaN for a cluster of one example).
        jaccard: ``{cluster: best-match Jaccard}`` (mean over resamples).
        clusterer: the clusterer the full fit chose (``GroupedDiscovery.method_``), where
            the caller records it.
    """

    method: str
    fraction: float
    n_resamples: int = field(init=False)
    ari_mean: float = field(init=False)
    ari_std: float = field(init=False)
    ari: Annotated[np.ndarray, list[float]]
    n_clusters: Annotated[np.ndarray, list[int]]
    co_assignment: dict[int, float]
    jaccard: dict[int, float]
    clusterer: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_resamples", int(np.size(self.ari)))
        object.__setattr__(self, "ari_mean", float(np.mean(self.ari)))
        object.__setattr__(self, "ari_std", float(np.std(self.ari)))


def draw_rows(method: str, n: int, n_resamples: int, fraction: float | None,
              rng: np.random.RandomState) -> tuple[list[np.ndarray], float]:
    """``n_resamples`` sorted arrays of row positions drawn by ``method`` (a key of
    :data:`RESAMPLERS`), and the fraction used; checks the arguments first."""
    try:
        resampler = RESAMPLERS[method]
    except KeyError:
        raise ValueError(f"method must be one of {sorted(RESAMPLERS)}, got {method!r}") from None
    fraction = resampler.default_fraction if fraction is None else float(fraction)
    size = int(round(fraction * n))
    if not 0.0 < fraction <= resampler.max_fraction or size < 2:
        raise ValueError(f"fraction={fraction} draws {size} of {n} rows; a resample needs "
                         f"at least 2 rows and {method} at most {resampler.max_fraction} of them")
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    return [resampler.draw(rng, n, size) for _ in range(int(n_resamples))], fraction


def resample_stability(full: np.ndarray, draws: Sequence[np.ndarray],
                       refit: Callable[[np.ndarray], np.ndarray], method: str = "subsample",
                       fraction: float = 0.8, progress: bool = False) -> ClusterStability:
    """Compare ``full`` (labels of every row) with ``refit(rows)`` (labels of the rows
    ``rows``, a resample) on each of ``draws``: steps 3-4 of the module docstring."""
    from tqdm.auto import tqdm

    full = np.asarray(full, dtype=int)
    clusters = sorted(c for c in set(full.tolist()) if c >= 0)
    ari, ks = [], []
    pairs: dict[int, list] = {c: [] for c in clusters}
    best: dict[int, list] = {c: [] for c in clusters}
    for rows in tqdm(draws, desc="cluster stability", disable=not progress):
        labels = np.asarray(refit(rows), dtype=int)
        drawn, first = np.unique(rows, return_index=True)
        mine, theirs = full[drawn], labels[first]
        ari.append(adjusted_rand_score(mine, theirs))
        ks.append(len(set(labels.tolist()) - {-1}))
        for c in clusters:
            members = theirs[mine == c]
            if members.size == 0:
                continue
            if members.size > 1:
                pairs[c].append(_together(members) / math.comb(members.size, 2))
            best[c].append(_best_jaccard(mine == c, theirs))
    return ClusterStability(
        ari=np.asarray(ari, dtype=np.float64), n_clusters=np.asarray(ks, dtype=int),
        co_assignment={c: _mean(pairs[c]) for c in clusters},
        jaccard={c: _mean(best[c]) for c in clusters}, method=method, fraction=fraction)


def cluster_stability(gd: GroupedDiscovery, A: Rows, n_resamples: int = 20, *,
                      method: Literal["subsample", "bootstrap"] = "subsample",
                      fraction: float | None = None,
                      random_state: None | int | np.random.RandomState = None,
                      progress: bool = False,
                      clusterer: Literal["same", "chosen"] = "same") -> ClusterStability:
    """Refit ``gd``'s clustering on resamples of the rows of ``A`` (the matrix or array it
    was fitted on) and compare with its labels; see the module docstring. ``clusterer``:
    ``"same"`` (``gd``'s own setting) or ``"chosen"`` (the one ``"auto"`` picked)."""
    from sklearn.utils.validation import check_is_fitted

    from auto_circuit_dcd.cluster.partition import partition
    from auto_circuit_dcd.cluster.select_k import GAP_RULES, ReferenceCurves, euclidean_distances

    check_is_fitted(gd, "labels_")
    X, _ = as_rows(A)
    full = np.asarray(gd.labels_, dtype=int)
    if len(X) != full.size or X.shape[1] != gd.n_features_in_:
        raise ValueError(f"gd was fitted on {full.size} rows of {gd.n_features_in_} features; "
                         f"got {X.shape}: pass the matrix it was fitted on")
    if clusterer not in ("same", "chosen"):
        raise ValueError(f"clusterer must be 'same' or 'chosen', got {clusterer!r}")
    rng = check_random_state(random_state)
    draws, fraction = draw_rows(method, len(X), n_resamples, fraction, rng)
    settings = gd.partition_settings()
    if clusterer == "chosen" and gd.clusterer == "auto" and gd.method_ in PATH_CLUSTERERS:
        settings = replace(settings, clusterer=gd.method_)
    search = getattr(gd, "space_selection_", None)
    if search is not None and search.one_cluster:  # the space search, not a refit, said so
        settings = replace(settings, n_clusters=1)
    Z = gd.embedding_
    D = euclidean_distances(Z)
    curves = None
    if settings.test_single_cluster or settings.k_rule in GAP_RULES:
        curves = ReferenceCurves(Z, int(settings.gap_references), rng)
    seeds = rng.randint(np.iinfo(np.int32).max, size=len(draws))
    refits = iter(seeds)

    def refit(rows: np.ndarray) -> np.ndarray:
        return partition(Z[rows], settings, np.random.RandomState(next(refits)),
                         distances=D[np.ix_(rows, rows)], curves=curves).labels

    return resample_stability(full, draws, refit, method, fraction, progress)


def _together(labels: np.ndarray) -> int:
    """Pairs of ``labels`` in one cluster (noise ``-1`` is in none)."""
    counts = np.bincount(labels[labels >= 0])
    return int(sum(math.comb(int(k), 2) for k in counts))


def _best_jaccard(in_cluster: np.ndarray, labels: np.ndarray) -> float:
    """Largest Jaccard index of the rows ``in_cluster`` with one cluster of ``labels``."""
    scores = [float((in_cluster & (labels == r)).sum() / (in_cluster | (labels == r)).sum())
              for r in set(labels.tolist()) if r >= 0]
    return max(scores, default=0.0)


def _mean(values: list) -> float:
    return float(np.mean(values)) if values else float("nan")
