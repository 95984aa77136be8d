"""Paired tests on the same test examples, and corrections across a family of tests.

Two circuits A and B evaluated on the same examples share the denominator of the ratio of
means (``mu(full) - mu(empty)`` summed over those examples), so

    f(A) - f(B) = mean_i (mu_i(A) - mu_i(B)) / mean_i (mu_i(full) - mu_i(empty))

and ``f(A) = f(B)`` exactly when the per-example differences ``delta_i = mu_i(A) -
mu_i(B)`` have mean 0. The same holds for a combination of circuits that picks one circuit
per example (DCD routed or oracle, K-random) and for CPR, a fixed weighted sum of sizes.
:func:`sign_flip_pvalues` tests that mean:

1. the statistic is the paired t, ``mean(delta) / (sd(delta) / sqrt(n))``;
2. under the null each ``delta_i`` is as likely to have either sign: the p-value is the
   share of sign flips ``s_i delta_i`` whose ``|t|`` reaches the observed one, every flip
   when ``2^n`` is at most ``n_flips`` (exact), else ``n_flips`` random flips plus the
   observed one, ``(1 + hits) / (1 + n_flips)`` (never 0);
3. the test is exact when the differences are symmetric about 0, and the studentised
   statistic keeps it valid for large ``n`` when they are not (Janssen 1999). Measured
   (``docs/uncertainty.md``): under a symmetric null it rejected 4-5.5% of the time at the
   5% level with 10 to 80 examples, where "the bootstrap interval of the difference
   excludes 0" rejected 4-6.6%, and 8.4% with 5 examples (the sign-flip test cannot reject
   with 5: its smallest p-value is 2/32); under a skewed null (exponential differences)
   both rejected 6-8%. The test works on the per-example differences alone: no ratio is
   resampled.

:data:`CORRECTIONS` adjust a family of p-values: ``"holm"`` (default: Holm's step-down,
family-wise error at most the level under any dependence between the tests, which sizes
of nested circuits on the same examples certainly have), ``"bh"`` (Benjamini-Hochberg: the
expected share of false findings at most the level, under positive dependence), ``"none"``.
NaN p-values are left out of the family and stay NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np

__all__ = ["sign_flip_pvalues", "holm", "benjamini_hochberg", "CORRECTIONS", "Correction",
           "check_correction"]

Correction = Literal["holm", "bh", "none"]
_TIE = 1e-12  # relative: |t*| this close to the observed |t| counts as reaching it


def _signs(n: int, n_flips: int, seed: int) -> tuple[np.ndarray, bool]:
    """``([R, n] of +-1, exact)``: every sign vector when ``2^n <= n_flips``, else random."""
    if n <= 20 and 2 ** n <= n_flips:
        codes = np.arange(2 ** n)[:, None] >> np.arange(n)[None, :]
        return 1.0 - 2.0 * (codes & 1), True
    rng = np.random.default_rng(seed)
    return rng.choice(np.array([-1.0, 1.0]), size=(n_flips, n)), False


def _t(sums: np.ndarray, squares: np.ndarray, n: int) -> np.ndarray:
    mean = sums / n
    var = np.maximum(squares - n * mean ** 2, 0.0) / (n - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = mean / np.sqrt(var / n)
    return np.where(var > 0, t, np.where(mean == 0, 0.0, np.copysign(np.inf, mean)))


def sign_flip_pvalues(delta: np.ndarray, n_flips: int = 2000, seed: int = 0) -> np.ndarray:
    """Two-sided p-value per column of ``delta [n, K]`` (paired differences, one row per
    example) for "their mean is 0"; 1 where every difference is 0, NaN with no rows."""
    delta = np.asarray(delta, dtype=np.float64)
    if delta.ndim == 1:
        delta = delta[:, None]
    n, k = delta.shape
    if n == 0:
        return np.full(k, np.nan)
    if n == 1:
        return np.ones(k)
    signs, exact = _signs(n, int(n_flips), int(seed))
    squares = (delta ** 2).sum(0)
    observed = np.abs(_t(delta.sum(0), squares, n))
    flipped = np.abs(_t(signs @ delta, squares[None, :], n))
    hits = (flipped >= observed[None, :] * (1 - _TIE)).sum(0)
    p = hits / signs.shape[0] if exact else (1.0 + hits) / (1.0 + signs.shape[0])
    return np.minimum(p, 1.0)


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values: the ``j``-th smallest of ``m`` times
    ``m - j + 1``, made non-decreasing in that order, at most 1."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    scaled = p[order] * (m - np.arange(m))
    out[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return out


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values: the ``j``-th smallest of ``m`` times ``m / j``,
    made non-decreasing in that order (the minimum over the larger ones), at most 1."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    scaled = p[order] * m / np.arange(1, m + 1)
    out[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return out


#: correction -> adjusted p-values of a family
CORRECTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "holm": holm,
    "bh": benjamini_hochberg,
    "none": lambda p: np.asarray(p, dtype=np.float64).copy(),
}


def check_correction(correction: str) -> str:
    """``correction`` if it is a key of :data:`CORRECTIONS`, else a ``ValueError``."""
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {sorted(CORRECTIONS)}, got {correction!r}")
    return correction
