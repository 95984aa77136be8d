"""Bootstrap over test examples: one resampling plan, statistics as ratios of weighted sums,
and percentile-type intervals, vectorised over every statistic at once.

Every faithfulness number of a run is a ratio of sums over test examples: with
``num_i = mu_i(C) - mu_i(empty)`` and ``den_i = mu_i(full) - mu_i(empty)`` (zero outside the
examples it is taken on), ``f = sum_i num_i / sum_i den_i``. A resample draws ``n`` examples
with replacement; example ``i`` drawn ``w_i`` times gives ``sum_i w_i num_i / sum_i w_i
den_i``: the ratio of means recomputed on the resample. So:

1. :meth:`Bootstrap.weights` draws the counts ``W [n_resamples, n]`` (multinomial, fixed
   seed); the same plan and ``n`` give the same ``W`` for every statistic of a run, so any
   two statistics (and their difference) are computed on the same resamples: paired;
2. :func:`ratio_replicates` computes, for ``K`` statistics at once, the full-sample value,
   the ``B`` resampled values (``W @ num / W @ den``: NaN where a resample holds none of a
   statistic's examples) and the ``n`` leave-one-out values (for BCa's acceleration);
3. :meth:`Replicates.map` carries a function of the statistics (an area under a curve, a
   difference) through all three, so derived statistics get intervals the same way;
4. :meth:`Replicates.interval` gives the interval of each column (:data:`INTERVALS`):
   ``"expanded-percentile"`` (default): the percentile interval at Hesterberg's expanded
   levels ``alpha' = 2 Phi(-sqrt(n / (n - 1)) t_{n-1, 1 - alpha/2})``, ``n`` the examples
   the statistic is taken on; ``"percentile"``: the ``alpha/2`` and ``1 - alpha/2``
   quantiles of the finite resampled values; ``"bca"``: Efron's bias-corrected and
   accelerated percentiles (``z0`` from the share of resampled values below the estimate,
   ties counted half; acceleration from the leave-one-out values). A statistic equal in
   every resample gets a zero-width interval.

Why the expanded percentile: the plain percentile and BCa intervals are too narrow in
small samples (they use the plug-in spread, short by ``sqrt((n - 1) / n)``, with normal
instead of t tails). On synthetic ratios of means with a known value, nominal 95%
intervals held it 83-84% of the time (percentile, BCa) vs 92% (expanded) with 5 examples,
89-92% vs 95-96% with 10, 90-93% vs 94-96% with 15 to 20, 93-95% vs 94-96% with 40 to
80; BCa's corrections did not help these ratios at any size (``docs/uncertainty.md``;
``python benchmarks/bench_uncertainty.py --coverage``). Groups of 10 to 40 test examples
are this package's usual case.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

__all__ = ["Bootstrap", "Replicates", "Interval", "INTERVALS", "IntervalMethod",
           "resample_weights", "ratio_replicates", "expanded_alpha", "check_interval_method"]

IntervalMethod = Literal["expanded-percentile", "percentile", "bca"]


@dataclass
class Interval:
    """A statistic on the whole sample and its confidence interval (NaN where undefined)."""

    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class Bootstrap:
    """The resampling plan shared by every interval of a run.

    Attributes:
        n_resamples: resamples of the test examples (and sign flips of a paired test).
        level: confidence level of every interval, and ``1 - level`` the tests' level.
        method: ``"expanded-percentile"`` (default), ``"percentile"`` or ``"bca"``
            (:data:`INTERVALS`).
        seed: seed of the resamples (numpy's ``default_rng``).
    """

    n_resamples: int = 2000
    level: float = 0.95
    method: str = "expanded-percentile"
    seed: int = 0

    def __post_init__(self) -> None:
        if int(self.n_resamples) != self.n_resamples or self.n_resamples < 100:
            raise ValueError(f"n_resamples must be a whole number of at least 100, got "
                             f"{self.n_resamples}")
        if not 0.5 <= self.level < 1.0:
            raise ValueError(f"level must lie in [0.5, 1), got {self.level}")
        check_interval_method(self.method)

    @property
    def alpha(self) -> float:
        """The tests' level, ``1 - level``."""
        return 1.0 - self.level

    def weights(self, n: int) -> np.ndarray:
        """``[n_resamples, n]`` float counts: how often each example is drawn per resample."""
        return resample_weights(n, int(self.n_resamples), int(self.seed))


@lru_cache(maxsize=8)
def _weights(n: int, n_resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.multinomial(n, np.full(n, 1.0 / n), size=n_resamples).astype(np.float64)
    w.setflags(write=False)
    return w


def resample_weights(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """``[n_resamples, n]``: per resample, how many times each of ``n`` examples is drawn
    (``n`` draws with replacement); the same arguments give the same (read-only) array."""
    if n < 1:
        raise ValueError("no examples to resample")
    return _weights(int(n), int(n_resamples), int(seed))


@dataclass(frozen=True)
class Replicates:
    """``K`` statistics on the whole sample, on each resample and leaving out each example.

    Attributes:
        estimate: ``[K]`` on the whole sample.
        resampled: ``[n_resamples, K]`` (NaN: undefined on that resample).
        jackknife: ``[n, K]`` leaving out example ``i`` (NaN: undefined without it).
        n_examples: ``[K]`` examples each statistic is taken on (the expanded
            percentile's ``n``).
    """

    estimate: np.ndarray
    resampled: np.ndarray
    jackknife: np.ndarray
    n_examples: np.ndarray

    def map(self, fn: Callable[[np.ndarray], np.ndarray],
            n_examples: np.ndarray | None = None) -> Replicates:
        """``fn`` (``[R, K] -> [R, K']``, row by row) applied to all three; ``n_examples``
        ``[K']`` of the new statistics (needed when ``K'`` differs from ``K``)."""
        est = fn(self.estimate[None, :])[0]
        n = self.n_examples if n_examples is None else np.asarray(n_examples, dtype=np.int64)
        if n.shape != est.shape:
            raise ValueError(f"{est.size} statistics after the map: give their n_examples")
        return Replicates(est, fn(self.resampled), fn(self.jackknife), n)

    def columns(self, index: np.ndarray | slice | list) -> Replicates:
        """The statistics ``index`` only."""
        return Replicates(self.estimate[index], self.resampled[:, index],
                          self.jackknife[:, index], self.n_examples[index])

    def interval(self, level: float,
                 method: str = "expanded-percentile") -> tuple[np.ndarray, np.ndarray]:
        """``(low [K], high [K])`` at ``level`` by ``method`` (:data:`INTERVALS`)."""
        return INTERVALS[check_interval_method(method)](self, level)

    def intervals(self, level: float, method: str = "expanded-percentile") -> list[Interval]:
        """One :class:`Interval` per statistic."""
        low, high = self.interval(level, method)
        return [Interval(float(e), float(lo), float(hi))
                for e, lo, hi in zip(self.estimate, low, high)]


def ratio_replicates(num: np.ndarray, den: np.ndarray, weights: np.ndarray,
                     n_examples: np.ndarray | None = None) -> Replicates:
    """Replicates of ``sum_i w_i num[i, k] / sum_i w_i den[i, k]`` for each column ``k``.

    ``num``, ``den``: ``[n, K]`` (``den`` may be ``[n]``, shared); an example outside a
    statistic has 0 in both. ``weights``: ``[n_resamples, n]`` from :meth:`Bootstrap.weights`.
    ``n_examples``: ``[K]`` examples each statistic is taken on (default: the rows where
    ``num`` or ``den`` is not 0).
    """
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    if den.ndim == 1:
        den = np.broadcast_to(den[:, None], num.shape)
    if num.ndim != 2 or den.shape != num.shape or weights.shape[1] != num.shape[0]:
        raise ValueError(f"num {num.shape} and den {den.shape} must be [n, K] for weights "
                         f"of {weights.shape[1]} examples")
    total_num, total_den = num.sum(0), den.sum(0)
    n = (((num != 0) | (den != 0)).sum(0) if n_examples is None
         else np.broadcast_to(np.asarray(n_examples, dtype=np.int64), total_num.shape).copy())
    return Replicates(_divide(total_num, total_den),
                      _divide(weights @ num, weights @ den),
                      _divide(total_num[None, :] - num, total_den[None, :] - den), n)


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.asarray(a / b, dtype=np.float64)
    out[b == 0] = np.nan
    return out


# ----------------------------------------------------------------------------- intervals
def _ndtr(x: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return ndtr(x)


def _ndtri(p: np.ndarray) -> np.ndarray:
    from scipy.special import ndtri

    return ndtri(p)


def _quantiles(values: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per column ``k``, the ``q[k]`` quantile of its finite values (numpy's linear rule);
    NaN for a column with none."""
    srt = np.sort(values, axis=0)  # NaN last
    m = np.isfinite(values).sum(0)
    pos = np.clip(q, 0.0, 1.0) * np.maximum(m - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(m - 1, 0))
    cols = np.arange(values.shape[1])
    frac = pos - lo
    a, b = srt[lo, cols], srt[hi, cols]
    out = a + frac * (b - a)
    out = np.where(frac == 0, a, out)  # keeps an infinite order statistic exact
    out[m == 0] = np.nan
    return out


def _percentile_at(reps: Replicates, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``alpha / 2`` and ``1 - alpha / 2`` quantiles per column (``alpha [K]``)."""
    ok = np.isfinite(reps.estimate) & np.isfinite(alpha)
    alpha = np.where(ok, alpha, 0.5)
    return (np.where(ok, _quantiles(reps.resampled, alpha / 2), np.nan),
            np.where(ok, _quantiles(reps.resampled, 1 - alpha / 2), np.nan))


def _percentile(reps: Replicates, level: float) -> tuple[np.ndarray, np.ndarray]:
    return _percentile_at(reps, np.full(reps.estimate.shape, 1.0 - level))


def expanded_alpha(n: np.ndarray, level: float) -> np.ndarray:
    """Hesterberg's expanded levels: ``2 Phi(-sqrt(n / (n - 1)) t_{n-1, 1 - alpha/2})`` per
    ``n`` (NaN below 2 examples)."""
    from scipy.stats import t

    n = np.asarray(n, dtype=np.float64)
    ok = n >= 2
    m = np.where(ok, n, 2.0)
    z = np.sqrt(m / (m - 1)) * t.ppf(1 - (1 - level) / 2, m - 1)
    return np.where(ok, 2 * _ndtr(-z), np.nan)


def _expanded(reps: Replicates, level: float) -> tuple[np.ndarray, np.ndarray]:
    return _percentile_at(reps, expanded_alpha(reps.n_examples, level))


def _bca(reps: Replicates, level: float) -> tuple[np.ndarray, np.ndarray]:
    alpha = 1.0 - level
    r, est = reps.resampled, reps.estimate
    finite = np.isfinite(r)
    m = finite.sum(0)
    below = ((r < est) & finite).sum(0) + 0.5 * ((r == est) & finite).sum(0)
    share = np.clip(below / np.maximum(m, 1), 0.5 / np.maximum(m, 1), 1 - 0.5 / np.maximum(m, 1))
    z0 = _ndtri(share)
    jack = reps.jackknife
    ok = np.isfinite(jack)
    n_ok = np.maximum(ok.sum(0), 1)
    mean = np.where(ok, jack, 0.0).sum(0) / n_ok
    d = np.where(ok, mean[None, :] - jack, 0.0)
    s2, s3 = (d ** 2).sum(0), (d ** 3).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(s2 > 0, s3 / (6.0 * s2 ** 1.5), 0.0)
    bounds = []
    for z in (_ndtri(np.array(alpha / 2)), _ndtri(np.array(1 - alpha / 2))):
        zz = z0 + z
        with np.errstate(divide="ignore", invalid="ignore"):
            q = _ndtr(z0 + zz / (1 - a * zz))
        q = np.where(1 - a * zz > 0, q, 1.0 if z > 0 else 0.0)
        bounds.append(_quantiles(r, q))
    low, high = bounds
    est_ok = np.isfinite(est)
    return np.where(est_ok, low, np.nan), np.where(est_ok, high, np.nan)


#: interval method -> ``f(replicates, level) -> (low [K], high [K])``
INTERVALS: dict[str, Callable[[Replicates, float], tuple[np.ndarray, np.ndarray]]] = {
    "expanded-percentile": _expanded,
    "percentile": _percentile,
    "bca": _bca,
}


def check_interval_method(method: str) -> str:
    """``method`` if it is a key of :data:`INTERVALS`, else a ``ValueError`` listing them."""
    if method not in INTERVALS:
        raise ValueError(f"interval method must be one of {sorted(INTERVALS)}, got {method!r}")
    return method
