"""Choosing the clustering space from the data: candidate spaces x clusterers x k.

``search_spaces(X, spaces, settings, ...)``, labels never read:

1. place the rows in every candidate space (:func:`.spaces.embed`: preprocessing, SVD);
2. partition each space as a fixed space would be (:func:`.partition.partition`: the k=1
   test, then each clusterer with k chosen by ``k_rule``); each (space, clusterer) is a
   candidate with its k, silhouette and smallest cluster;
3. a candidate is *eligible* when its space's k=1 test found structure, ``k >= 2``, every
   cluster holds at least :func:`size_floor` rows (``min_cluster_size``, or a tenth of the
   rows where that is fewer, never fewer than 2: a split that cuts off a few outlying
   rows is stable and well separated, and says nothing about mechanisms; not asked of a
   fixed ``n_clusters``); a space that cannot be clustered (a fixed ``n_clusters`` above its
   distinct rows, HDBSCAN finding only noise) is left out;
4. subsample stability of each eligible candidate: the same ``n_resamples`` row subsets
   for every candidate (paired); each subset reclustered in that candidate's reduced space
   by its clusterer at its k (Ben-Hur et al. 2002; Lange et al. 2004: stability at a given
   k); ARI with the candidate's own labels on the drawn rows;
5. the same on structureless data (Clest's null, Dudoit & Fridlyand 2002): :data:`NULL_DRAWS`
   Gaussian samples with the candidate's mean and covariance in its reduced space,
   clustered and resampled the same way. Stability alone rewards any split that a clusterer
   makes the same way every time: k-means halves an elongated blob along its long axis
   (measured: 0.93-0.98 on one Gaussian of the data's shape), so only the *excess* over
   the null is evidence of groups. A candidate is *admissible* when eligible and its
   excess is at least :data:`MIN_EXCESS`; with a fixed ``n_clusters``, HDBSCAN or a
   clusterer instance (k not chosen by the search) the null is not run and every eligible
   candidate is admissible;
6. the criterion (:data:`CRITERION`): the highest mean stability; among candidates within
   :data:`TIE_TOLERANCE` of it, the best silhouette;
7. the chosen candidate is *barely better* (``near_tie``) when an admissible candidate of
   another space whose labels differ from it (ARI below :data:`SAME_PARTITION`) has a
   stability within ``max(TIE_TOLERANCE, 2 x standard error of the paired difference)``.

No admissible candidate: one cluster, in the first space. ``docs/clustering.md`` gives the
measurements behind each threshold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import TypeVar

import numpy as np
from sklearn.metrics import adjusted_rand_score

from auto_circuit_dcd.cluster.clusterers import PATH_CLUSTERERS
from auto_circuit_dcd.cluster.partition import Partition, PartitionSettings, partition
from auto_circuit_dcd.cluster.spaces import Embedding, embed
from auto_circuit_dcd.cluster.stability import draw_rows
from auto_circuit_dcd.errors import ClusteringError

__all__ = ["DEFAULT_SPACES", "CRITERION", "NEAR_TIE_RULE", "TIE_TOLERANCE", "SAME_PARTITION",
           "MIN_EXCESS", "NULL_DRAWS", "SpaceCandidate", "SpaceSelection", "Evaluation",
           "evaluate_candidates", "search_spaces", "null_like", "size_floor"]

#: the spaces ``preprocessing="auto"`` tries, in order (ties keep the first)
DEFAULT_SPACES: tuple[str, ...] = ("l2", "raw", "binary")
#: stability means closer than this are a tie, broken by silhouette
TIE_TOLERANCE = 0.02
#: two labellings with at least this ARI are the same partition (their tie does not matter)
SAME_PARTITION = 0.9
#: smallest excess of a candidate's stability over its null's for it to count as structure
MIN_EXCESS = 0.2
#: structureless samples each candidate's null stability is averaged over
NULL_DRAWS = 10
CRITERION = ("admissible candidates (structure in the k=1 test, no cluster below "
             "min_cluster_size or a tenth of the rows, stability at least "
             f"{MIN_EXCESS} above the same clustering's "
             "on a Gaussian of the data's shape): the highest mean subsample stability; "
             f"within {TIE_TOLERANCE} of it, the best silhouette")
NEAR_TIE_RULE = (f"an admissible candidate of another space whose labels differ (ARI < "
                 f"{SAME_PARTITION}) has a stability within max({TIE_TOLERANCE}, 2 x standard "
                 "error of the paired difference over the resamples)")

_MAX_SEED = np.iinfo(np.int32).max
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class SpaceCandidate:
    """One (space, clusterer) candidate of the search.

    Attributes:
        space, clusterer: where and how the rows were clustered.
        k: clusters at the k the rule chose (1 when the space's k=1 test found none).
        silhouette: of those labels in that space (None for one cluster).
        smallest: rows in the smallest cluster.
        structure: the space's k=1 test found structure.
        eligible: structure, ``k >= 2``, ``smallest >= size_floor(...)``.
        stability, stability_std: mean and standard deviation over the resamples of the ARI
            between each refit and these labels (None: not measured, not eligible).
        null_stability: the same on structureless data of the same shape (None: not run).
        excess: ``stability - null_stability``.
        admissible: eligible and ``excess >= MIN_EXCESS`` (where the null ran).
        chosen: the candidate ``GroupedDiscovery`` kept.
    """

    space: str
    clusterer: str
    k: int
    silhouette: float | None
    smallest: int
    structure: bool
    eligible: bool
    stability: float | None = None
    stability_std: float | None = None
    null_stability: float | None = None
    excess: float | None = None
    admissible: bool = False
    chosen: bool = False


@dataclass(frozen=True)
class SpaceSelection:
    """The table of candidates and what the criterion made of it.

    Attributes:
        candidates: every (space, clusterer), in the order tried.
        space, clusterer: the chosen candidate (for one cluster: the first space and
            ``"single"``).
        one_cluster: no candidate is admissible: no space shows groups.
        runner_up: ``(space, clusterer)`` of the best admissible candidate of another space
            whose labels differ from the chosen ones (None when there is none).
        margin: chosen stability minus the runner-up's.
        margin_se: standard error of that difference over the paired resamples.
        near_tie: the margin is within ``max(TIE_TOLERANCE, 2 x margin_se)``.
        criterion, near_tie_rule: the rules, in words.
        n_resamples, fraction: the stability resamples (subsamples of that share of rows).
    """

    candidates: tuple[SpaceCandidate, ...]
    space: str
    clusterer: str
    one_cluster: bool
    runner_up: tuple[str, str] | None
    margin: float | None
    margin_se: float | None
    near_tie: bool
    criterion: str
    near_tie_rule: str
    n_resamples: int
    fraction: float

    def to_dict(self) -> dict[str, object]:
        """JSON form (the candidates as a list of dicts)."""
        return {**asdict(self), "candidates": [asdict(c) for c in self.candidates],
                "runner_up": list(self.runner_up) if self.runner_up else None}


@dataclass(frozen=True)
class _Space:
    """One space's embedding and partition (None: ``error``), each clusterer's labels
    there."""

    embedding: Embedding
    partition: Partition | None
    labels: dict[str, np.ndarray]
    error: str | None


Key = tuple[str, str]


@dataclass(frozen=True)
class Evaluation:
    """Every candidate of a search, measured but not yet chosen from (steps 1-5).

    Attributes:
        candidates: the table rows (``admissible`` set, ``chosen`` not yet).
        labels: ``{(space, clusterer): labels}`` of every candidate.
        aris: ``{(space, clusterer): [ARI per resample]}`` of the eligible ones.
        embeddings, partitions: per space that could be clustered, in the order tried.
        n_resamples, fraction: the resamples.
    """

    candidates: tuple[SpaceCandidate, ...]
    labels: dict[Key, np.ndarray]
    aris: dict[Key, np.ndarray]
    embeddings: dict[str, Embedding]
    partitions: dict[str, Partition]
    n_resamples: int
    fraction: float


def evaluate_candidates(X: np.ndarray, spaces: Sequence[str], settings: PartitionSettings, *,
                        gamma: float, reduction: str, n_components: int, n_resamples: int,
                        fraction: float, rng: np.random.RandomState,
                        n_jobs: int | None = None) -> Evaluation:
    """Steps 1-5 of the module docstring: every candidate with its stability, null and
    admissibility."""
    seeds = rng.randint(_MAX_SEED, size=(len(spaces), 2))
    draw_seed, refit_seed, null_seed = (int(x) for x in rng.randint(_MAX_SEED, size=3))

    def place(i: int) -> _Space:
        emb = embed(X, spaces[i], gamma=gamma, reduction=reduction,
                    n_components=n_components, seed=int(seeds[i, 0]))
        try:
            part = partition(emb.points, settings, np.random.RandomState(seeds[i, 1]),
                             distances=emb.distances)
        except ClusteringError as err:  # e.g. HDBSCAN calls every row noise in this space
            return _Space(emb, None, {}, str(err))
        return _Space(emb, part, _labels_by_clusterer(part), None)

    placed = _map(place, range(len(spaces)), n_jobs)
    failed = [sp.error for sp in placed if sp.partition is None]
    if len(failed) == len(placed):
        raise ClusteringError(f"no candidate space could be clustered: {failed[0]}")
    placed = [sp for sp in placed if sp.partition is not None]
    rows, labels = _candidates(placed, settings)
    embeddings = {sp.embedding.space: sp.embedding for sp in placed}
    eligible = [c for c in rows if c.eligible]
    draws, fraction = draw_rows("subsample", len(X), n_resamples, fraction,
                                np.random.RandomState(draw_seed)) if eligible else ([], fraction)
    with_null = settings.n_clusters is None and isinstance(settings.clusterer, str) and \
        settings.clusterer != "hdbscan"

    def measure(c: SpaceCandidate) -> tuple[np.ndarray, float | None]:
        emb = embeddings[c.space]
        mine = _agreement(labels[(c.space, c.clusterer)], draws,
                          _refit(c, settings, emb, refit_seed))
        if not with_null:
            return mine, None
        null_rng = np.random.RandomState(null_seed)
        at = PATH_CLUSTERERS[c.clusterer].at_k
        nulls = []
        for _ in range(NULL_DRAWS):
            Z0 = null_like(emb.points, null_rng)
            full0 = at(Z0, c.k, refit_seed)
            nulls.append(_agreement(full0, draws, lambda r: at(Z0[r], c.k, refit_seed)).mean())
        return mine, float(np.mean(nulls))

    measured = dict(zip([(c.space, c.clusterer) for c in eligible],
                        _map(measure, eligible, n_jobs)))
    rows = [_scored(c, measured.get((c.space, c.clusterer))) for c in rows]
    partitions = {sp.embedding.space: sp.partition for sp in placed if sp.partition}
    return Evaluation(tuple(rows), labels, {key: m[0] for key, m in measured.items()},
                      embeddings, partitions, int(n_resamples), fraction)


def search_spaces(X: np.ndarray, spaces: Sequence[str], settings: PartitionSettings, *,
                  gamma: float, reduction: str, n_components: int, n_resamples: int,
                  fraction: float, rng: np.random.RandomState, n_jobs: int | None = None,
                  ) -> tuple[SpaceSelection, Embedding, Partition]:
    """Search the candidate ``spaces`` (module docstring); returns the table, the chosen
    space's embedding and its partition (with the chosen clusterer's labels)."""
    ev = evaluate_candidates(X, spaces, settings, gamma=gamma, reduction=reduction,
                             n_components=n_components, n_resamples=n_resamples,
                             fraction=fraction, rng=rng, n_jobs=n_jobs)
    rows = list(ev.candidates)
    pool = [c for c in rows if c.admissible]
    if not pool:
        first = next(iter(ev.embeddings))
        part = ev.partitions[first]
        if any(c.structure for c in rows):  # a space showed structure, none held up
            test = {**(part.single_cluster_test or {}), "one_cluster": True,
                    "reason": "space search: no candidate space shows groups more stable "
                              "than structureless data of the same shape"}
            part = Partition(np.zeros(len(X), dtype=int), "single",
                             selection=part.selection, single_cluster_test=test)
        table = SpaceSelection(tuple(rows), first, "single", True, None, None, None, False,
                               CRITERION, NEAR_TIE_RULE, ev.n_resamples, ev.fraction)
        return table, ev.embeddings[first], part
    chosen = _criterion(pool)
    key = (chosen.space, chosen.clusterer)
    runner, margin, se = _runner_up(chosen, pool, ev.aris, ev.labels)
    near = runner is not None and margin is not None and \
        margin <= max(TIE_TOLERANCE, 2.0 * (se if se is not None and se == se else 0.0))
    rows = [replace(c, chosen=(c.space, c.clusterer) == key) for c in rows]
    table = SpaceSelection(tuple(rows), chosen.space, chosen.clusterer, False, runner, margin,
                           se, bool(near), CRITERION, NEAR_TIE_RULE, ev.n_resamples,
                           ev.fraction)
    return table, ev.embeddings[chosen.space], _with_clusterer(
        ev.partitions[chosen.space], chosen.clusterer, ev.labels[key])


def size_floor(min_cluster_size: int, n: int) -> int:
    """The smallest cluster an eligible candidate may have: ``min_cluster_size`` rows, or a
    tenth of the rows where that is fewer, never fewer than 2."""
    return max(2, min(int(min_cluster_size), n // 10))


def null_like(Z: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """Structureless rows of ``Z``'s shape: a Gaussian sample with ``Z``'s mean and
    covariance (as many rows)."""
    mean = Z.mean(0)
    _, s, vt = np.linalg.svd(Z - mean, full_matrices=False)
    scale = s / np.sqrt(max(len(Z) - 1, 1))
    return mean + (rng.normal(size=(len(Z), len(s))) * scale) @ vt


def _candidates(placed: Sequence[_Space], settings: PartitionSettings,
                ) -> tuple[list[SpaceCandidate], dict[Key, np.ndarray]]:
    rows: list[SpaceCandidate] = []
    labels: dict[Key, np.ndarray] = {}
    for sp in placed:
        part = sp.partition
        assert part is not None
        structure = not (part.single_cluster_test or {}).get("one_cluster", False)
        structure = structure and part.n_clusters > 1
        for name, lab in sp.labels.items():
            kept = lab[lab >= 0]
            k = len(np.unique(kept))
            smallest = int(np.bincount(np.unique(kept, return_inverse=True)[1]).min()) \
                if kept.size else 0
            fixed = settings.n_clusters is not None  # k asked for: no size floor
            eligible = structure and k >= 2 and \
                (fixed or smallest >= size_floor(settings.min_cluster_size, len(lab)))
            rows.append(SpaceCandidate(sp.embedding.space, name, k if structure else 1,
                                       _silhouette(part, name) if structure else None,
                                       smallest, structure, eligible))
            labels[(sp.embedding.space, name)] = lab
    return rows, labels


def _refit(c: SpaceCandidate, settings: PartitionSettings, emb: Embedding,
           seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """Labels of a candidate's clustering on the rows ``rows`` of its space: its path
    clusterer at its k, or (HDBSCAN, instances) its clusterer choosing k again."""
    Z, D = emb.points, emb.distances
    if c.clusterer in PATH_CLUSTERERS:
        at = PATH_CLUSTERERS[c.clusterer].at_k
        return lambda rows: at(Z[rows], c.k, seed)
    own = replace(settings, test_single_cluster=False)
    return lambda rows: partition(Z[rows], own, np.random.RandomState(seed),
                                  distances=D[np.ix_(rows, rows)]).labels


def _agreement(full: np.ndarray, draws: Sequence[np.ndarray],
               refit: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """ARI of ``refit(rows)`` with ``full`` on the drawn rows, per draw."""
    return np.array([adjusted_rand_score(full[rows], refit(rows)) for rows in draws])


def _scored(c: SpaceCandidate, measured: tuple[np.ndarray, float | None] | None,
            ) -> SpaceCandidate:
    if measured is None:
        return c
    ari, null = measured
    stability = float(ari.mean())
    excess = None if null is None else stability - null
    return replace(c, stability=stability, stability_std=float(ari.std()),
                   null_stability=null, excess=excess,
                   admissible=excess is None or excess >= MIN_EXCESS)


def _criterion(pool: Sequence[SpaceCandidate]) -> SpaceCandidate:
    """Highest mean stability; within :data:`TIE_TOLERANCE` of it, the best silhouette
    (ties: the first candidate)."""
    top = max(float(c.stability or 0.0) for c in pool)
    near = [c for c in pool if float(c.stability or 0.0) >= top - TIE_TOLERANCE]
    return max(near, key=lambda c: (c.silhouette if c.silhouette is not None else -1.0,
                                    -pool.index(c)))


def _runner_up(chosen: SpaceCandidate, pool: Sequence[SpaceCandidate],
               aris: dict[Key, np.ndarray], labels: dict[Key, np.ndarray],
               ) -> tuple[Key | None, float | None, float | None]:
    """The best admissible candidate of another space whose labels differ from the chosen
    ones, the stability margin and the standard error of the paired difference."""
    mine = aris[(chosen.space, chosen.clusterer)]
    own = labels[(chosen.space, chosen.clusterer)]
    rivals = [c for c in pool if c.space != chosen.space and
              adjusted_rand_score(own, labels[(c.space, c.clusterer)]) < SAME_PARTITION]
    if not rivals:
        return None, None, None
    best = max(rivals, key=lambda c: (float(c.stability or 0.0), -pool.index(c)))
    diff = mine - aris[(best.space, best.clusterer)]
    se = float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else None
    return (best.space, best.clusterer), float(diff.mean()), se


def _labels_by_clusterer(part: Partition) -> dict[str, np.ndarray]:
    if part.alternatives:
        return dict(part.alternatives)
    return {part.method: part.labels}


def _silhouette(part: Partition, name: str) -> float | None:
    if not part.alternatives:
        return part.silhouette
    for row in part.selection:
        if row.get("method") == name and row.get("chosen"):
            return row.get("silhouette")
    return None


def _with_clusterer(part: Partition, name: str, labels: np.ndarray) -> Partition:
    """``part`` with ``name``'s labels kept (its selection rows marked so)."""
    if name == part.method:
        return part
    rows = tuple({**r, "selected": r.get("method") == name and bool(r.get("chosen"))}
                 if "selected" in r else r for r in part.selection)
    return replace(part, labels=labels, method=name, silhouette=_silhouette(part, name),
                   selection=rows)


def _map(fn: Callable[[T], R], items: Iterable[T], n_jobs: int | None) -> list[R]:
    """``[fn(x) for x in items]``, on ``n_jobs`` threads when above 1 (-1: one per item)."""
    items = list(items)
    if not n_jobs or n_jobs == 1 or len(items) < 2:
        return [fn(x) for x in items]
    workers = len(items) if n_jobs < 0 else min(int(n_jobs), len(items))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))
