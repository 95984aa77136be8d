"""Choosing the number of clusters: silhouette, elbow, gap statistic, and the k=1 test.

- **silhouette**: the ``k`` in ``2..K`` with the best mean silhouette (Euclidean, on the
  reduced rows).
- **elbow**: :func:`chord_elbow` on a decreasing curve over ``k = 1..K`` (k-means
  inertia; divisive summed within-cluster distances), both axes normalised to [0, 1]:
  the point farthest from the chord joining the first and last points.
  Agglomerative uses :func:`largest_merge_gap` on :func:`merge_gaps`: the ``k`` whose
  next merge (the one that would leave ``k - 1`` clusters) jumps the most in height.
- **gap statistic** (Tibshirani, Walther & Hastie 2001): ``W_k`` is the pooled
  within-cluster sum of squares; ``Gap(k) = mean_b log W*_kb - log W_k`` over ``B``
  reference sets drawn uniformly in the box aligned with the data's principal axes
  (their "method b") and clustered by the same algorithm; ``s_k = sd_b(log W*_kb)
  * sqrt(1 + 1/B)``; the estimate is the smallest ``k`` with
  ``Gap(k) >= Gap(k+1) - s_(k+1)``.
- **k = 1 test** (:func:`single_cluster_test`): the gap statistic's own rule at ``k = 1``
  with k-means: the data are called one cluster when ``Gap(1) >= Gap(2) - s_2``, that is
  when splitting them in two lowers the within-cluster dispersion no more than
  splitting structureless (uniform) data of the same extent does. Data whose rows are all
  identical are one cluster without a test.
- **combining rules** (:data:`COMBINE`): ``"largest"`` of the three (the method's
  default), ``"smallest"``, ``"median"``, or one criterion alone. The gap statistic is
  clustering ``B`` reference sets at every ``k``, most of the cost of choosing ``k``
  (20 reference sets: about 7 s of CPU per space on the embedded toy model's 256 rows, where
  everything else takes 0.4 s), so it is computed only for the rules that read it
  (:data:`GAP_RULES`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

__all__ = [
    "within_ss",
    "silhouette_by_k",
    "chord_elbow",
    "merge_gaps",
    "largest_merge_gap",
    "reference_sets",
    "ReferenceCurves",
    "gap_from_curves",
    "gap_statistic",
    "gap_choice",
    "single_cluster_test",
    "euclidean_distances",
    "GAP_RULES",
    "COMBINE",
    "combine",
]

LabelPath = Callable[[np.ndarray, int], dict[int, np.ndarray]]


def within_ss(X: np.ndarray, labels: np.ndarray) -> float:
    """Pooled within-cluster sum of squared distances to the cluster means (``W_k``)."""
    total = 0.0
    for c in np.unique(labels):
        block = X[labels == c]
        total += float(((block - block.mean(0)) ** 2).sum())
    return total


def silhouette_by_k(X: np.ndarray, path: Mapping[int, np.ndarray],
                    distances: np.ndarray | None = None) -> dict[int, float]:
    """Mean silhouette of each labelling with ``2 <= n_labels <= n - 1`` (noise ``-1`` left
    out), as scikit-learn's ``silhouette_score`` (Euclidean; a member of a cluster of one
    scores 0). The pairwise distances are computed once for every labelling
    (``distances``: them, already computed)."""
    D = euclidean_distances(X) if distances is None else distances
    out: dict[int, float] = {}
    for k, labels in path.items():
        labels = np.asarray(labels)
        keep = np.flatnonzero(labels >= 0)
        names, lab = np.unique(labels[keep], return_inverse=True)
        if not 2 <= len(names) <= keep.size - 1:
            continue
        onehot = np.zeros((keep.size, len(names)))
        onehot[np.arange(keep.size), lab] = 1.0
        sums = D[np.ix_(keep, keep)] @ onehot  # [i, c]: summed distance from i to cluster c
        counts = onehot.sum(0)
        own = counts[lab]
        a = sums[np.arange(keep.size), lab] / np.maximum(own - 1, 1)
        mean_to = sums / counts
        mean_to[np.arange(keep.size), lab] = np.inf
        b = mean_to.min(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            s = np.where(own > 1, (b - a) / np.maximum(a, b), 0.0)
        out[k] = float(np.mean(np.nan_to_num(s)))
    return out


def euclidean_distances(X: np.ndarray) -> np.ndarray:
    """``[n, n]`` Euclidean distances between the rows of ``X`` (exact zeros on the diagonal)."""
    X = np.asarray(X, dtype=np.float64)
    sq = (X ** 2).sum(1)
    D = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * X @ X.T, 0.0))
    np.fill_diagonal(D, 0.0)
    return D


def chord_elbow(curve: Mapping[int, float]) -> int:
    """The ``k`` of a curve farthest from the chord of its end points (axes normalised)."""
    ks = np.array(sorted(curve), dtype=float)
    ys = np.array([curve[int(k)] for k in ks], dtype=float)
    if len(ks) < 3:
        return int(ks[-1])
    x = (ks - ks[0]) / (ks[-1] - ks[0])
    span = ys.max() - ys.min()
    y = (ys - ys.min()) / span if span > 0 else np.zeros_like(ys)
    p0, p1 = np.array([x[0], y[0]]), np.array([x[-1], y[-1]])
    d = p1 - p0
    dist = np.abs(d[0] * (y - p0[1]) - d[1] * (x - p0[0])) / np.hypot(*d)
    return int(ks[int(np.argmax(dist))])


def merge_gaps(heights: np.ndarray, ks: Sequence[int]) -> dict[int, float]:
    """Agglomerative elbow curve: for each ``k`` in ``ks`` (``2 <= k <= n - 1``), the jump
    in height from the merge that left ``k`` clusters to the next one (which would leave
    ``k - 1``).

    ``heights`` are the ``n - 1`` merge heights (sorted here; non-decreasing in merge
    order for average linkage): ``k`` clusters remain after the ``n - k`` lowest merges.
    """
    h = np.sort(np.asarray(heights, dtype=float))
    n = len(h) + 1
    return {int(k): float(h[n - k] - h[n - k - 1]) for k in ks if 2 <= k <= n - 1}


def largest_merge_gap(gaps: Mapping[int, float], max_k: int) -> int:
    """Agglomerative elbow: the ``k`` in ``2..max_k`` with the largest :func:`merge_gaps`
    jump (ties: the smaller ``k``); 2 when there is none."""
    ks = [k for k in gaps if 2 <= k <= max_k]
    return int(max(ks, key=lambda k: (gaps[k], -k))) if ks else 2


def reference_sets(X: np.ndarray, n_refs: int, rng: np.random.RandomState) -> np.ndarray:
    """``[n_refs, n, d]`` uniform samples in the box aligned with X's principal axes."""
    Xc = X - X.mean(0)
    _, _, vt = np.linalg.svd(Xc, full_matrices=False)
    Z = Xc @ vt.T
    lo, hi = Z.min(0), Z.max(0)
    return rng.uniform(lo, hi, size=(n_refs,) + Z.shape)


def _log_w(X: np.ndarray, labels: np.ndarray, floor: float) -> float:
    return float(np.log(max(within_ss(X, labels), floor)))


def _floor(X: np.ndarray) -> float:
    """The smallest ``W_k`` taken (its log must stay finite): 1e-12 of the data's ``W_1``."""
    return 1e-12 * max(within_ss(X, np.zeros(len(X), dtype=int)), 1e-300)


class ReferenceCurves:
    """The gap statistic's reference sets for data ``X``, drawn once, and per clusterer the
    ``log W*_k`` of their clusterings at each number of rows, computed once.

    Fits on resamples of ``X``'s rows (stability refits) reuse them: a resample of ``m``
    rows is compared with the first ``m`` points of each reference set (uniform draws in
    ``X``'s box, so any ``m`` of them are a uniform sample of that box), clustered once
    for all resamples of that size.
    """

    def __init__(self, X: np.ndarray, n_refs: int, rng: np.random.RandomState,
                 refs: np.ndarray | None = None):
        if refs is None:
            if n_refs < 2:
                raise ValueError(
                    f"the gap statistic needs at least 2 reference sets, got {n_refs}")
            refs = reference_sets(X, n_refs, rng)
        self.refs = refs
        self.floor = _floor(X)
        self._curves: dict[tuple[str, int, int], dict[int, np.ndarray]] = {}

    def log_w(self, key: str, label_path: LabelPath, max_k: int,
              size: int | None = None) -> dict[int, np.ndarray]:
        """``{k: [log W*_k of each reference set]}`` for the clusterer ``key`` (whose
        labels ``label_path`` gives) on ``size`` points of each set (all by default)."""
        size = self.refs.shape[1] if size is None else int(size)
        cache_key = (key, size, int(max_k))
        if cache_key not in self._curves:
            out: dict[int, list] = {}
            for R in self.refs[:, :size]:
                for k, labels in label_path(R, max_k).items():
                    out.setdefault(k, []).append(_log_w(R, labels, self.floor))
            self._curves[cache_key] = {k: np.array(v) for k, v in out.items()}
        return self._curves[cache_key]


def gap_from_curves(X: np.ndarray, data_path: Mapping[int, np.ndarray],
                    ref_log_w: Mapping[int, np.ndarray], floor: float,
                    ) -> dict[str, dict[int, float]]:
    """``{"gap": {k: Gap(k)}, "se": {k: s_k}}`` of the data's labels ``data_path`` against
    reference ``log W*_k`` values (a ``k`` the references lack is skipped)."""
    gap, se = {}, {}
    for k, labels in sorted(data_path.items()):
        vals = np.asarray(ref_log_w.get(k, []))
        if len(vals) == 0:
            continue
        gap[k] = float(vals.mean() - _log_w(X, labels, floor))
        se[k] = float(vals.std() * np.sqrt(1.0 + 1.0 / len(vals)))
    return {"gap": gap, "se": se}


def gap_statistic(X: np.ndarray, label_path: LabelPath, max_k: int, n_refs: int,
                  rng: np.random.RandomState,
                  data_path: Mapping[int, np.ndarray] | None = None,
                  refs: np.ndarray | None = None,
                  curves: ReferenceCurves | None = None, key: str = "",
                  ) -> dict[str, dict[int, float]]:
    """``{"gap": {k: Gap(k)}, "se": {k: s_k}}`` for ``k = 1..max_k``.

    ``label_path(X, max_k)`` must return labels for each ``k`` (the clusterer under
    test); ``data_path`` is its result on ``X`` when already computed. A ``k`` missing
    from the data's path is skipped. Reference data: ``curves`` (reused, under the
    clusterer's ``key``), else ``refs`` (sets already drawn for ``X``), else ``n_refs``
    sets drawn from ``rng``.
    """
    if data_path is None:
        data_path = label_path(X, max_k)
    data_path = {k: v for k, v in data_path.items() if k <= max_k}
    if curves is None:
        curves = ReferenceCurves(X, n_refs, rng, refs=refs)
    ref = curves.log_w(key, label_path, max_k, size=len(X))
    return gap_from_curves(X, data_path, ref, curves.floor)


def gap_choice(gap: Mapping[int, float], se: Mapping[int, float], min_k: int = 1) -> int:
    """Smallest ``k >= min_k`` with ``Gap(k) >= Gap(k+1) - s_(k+1)``; else the largest k."""
    ks = sorted(k for k in gap if k >= min_k)
    for k in ks:
        if k + 1 in gap and gap[k] >= gap[k + 1] - se[k + 1]:
            return k
    return ks[-1] if ks else min_k


def single_cluster_test(X: np.ndarray, n_refs: int, rng: np.random.RandomState,
                        n_init: int = 10, refs: np.ndarray | None = None,
                        curves: ReferenceCurves | None = None, seed: int | None = None,
                        ) -> dict[str, object]:
    """The k=1 test (module docstring): ``{"one_cluster", "gap_1", "gap_2", "se_2"}``.
    Reference data: ``curves`` (shared and reused), ``refs`` (drawn for ``X``), else
    ``n_refs`` sets drawn here; ``seed``: k-means' (else drawn from ``rng``)."""
    from sklearn.cluster import KMeans

    if len(X) < 3 or np.allclose(X, X[0]):
        return {"one_cluster": True, "gap_1": None, "gap_2": None, "se_2": None,
                "reason": "fewer than 3 examples" if len(X) < 3 else "all rows identical"}
    seed = int(rng.randint(np.iinfo(np.int32).max)) if seed is None else int(seed)

    def path(data: np.ndarray, max_k: int) -> dict[int, np.ndarray]:
        km = KMeans(n_clusters=2, n_init=n_init, random_state=seed).fit(data)
        return {1: np.zeros(len(data), dtype=int), 2: km.labels_}

    g = gap_statistic(X, path, 2, n_refs, rng, refs=refs, curves=curves,
                      key="single-cluster test")
    gap1, gap2, se2 = g["gap"][1], g["gap"][2], g["se"][2]
    return {"one_cluster": bool(gap1 >= gap2 - se2), "gap_1": gap1, "gap_2": gap2,
            "se_2": se2, "reason": "gap statistic: Gap(1) >= Gap(2) - s_2"
            if gap1 >= gap2 - se2 else "gap statistic: Gap(1) < Gap(2) - s_2"}


#: k rules that read the gap statistic's choice (the others never compute it)
GAP_RULES = frozenset({"largest", "smallest", "median", "gap"})

COMBINE: dict[str, Callable[[Mapping[str, int]], int]] = {
    "largest": lambda ks: max(ks.values()),
    "smallest": lambda ks: min(ks.values()),
    "median": lambda ks: int(np.median(sorted(ks.values()))),
    "silhouette": lambda ks: ks["silhouette"],
    "elbow": lambda ks: ks["elbow"],
    "gap": lambda ks: ks["gap"],
}


def combine(rule: str, choices: Mapping[str, int]) -> int:
    """Combine the per-criterion choices ``{"silhouette": k, "elbow": k, "gap": k}`` (the
    gap's only for the rules in :data:`GAP_RULES`)."""
    try:
        fn = COMBINE[rule]
    except KeyError:
        raise ValueError(f"k_rule must be one of {sorted(COMBINE)}, got {rule!r}") from None
    return int(fn(choices))


def candidate_ks(max_k: int) -> Sequence[int]:
    return range(2, max_k + 1)
