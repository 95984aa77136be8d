"""Two groups of prompts compared on every column at once: effect sizes, a permutation
test and the false discovery rate.

:func:`two_group_test` takes a ``[n, m]`` matrix (rows: prompts; columns: edges or nodes)
and two disjoint row sets ``a`` and ``b``:

1. the rows of ``a`` and ``b`` are kept and each column centred (fewer rounding errors in
   the sums of squares that follow);
2. per column: the group means, Cohen's d (difference of means over the pooled standard
   deviation, ``ddof=1``) and the Welch t statistic (difference over
   ``sqrt(var_a / n_a + var_b / n_b)``);
3. ``n_permutations`` random relabellings of the kept rows (``n_a`` rows to ``a``), the
   same for every column: each is a 0/1 row vector, so a chunk of them times the matrix
   (and its square) gives every column's permuted sums in two matrix products, from
   which ``|t| >= |t_obs|`` is decided without forming ``t`` (:func:`_exceedances`);
4. two-sided p-value ``(1 + #{|t_perm| >= |t|}) / (n_permutations + 1)`` (Welch's t is
   studentised, so the test stays valid when the groups' variances differ);
5. columns constant over both groups are not tested (p NaN). :func:`benjamini_hochberg`
   (``scipy.stats.false_discovery_control``) turns the p-values of a family of columns
   into q-values; the caller chooses the family (edges and nodes separately).

A group of fewer than two rows has no variance: nothing is tested then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["TwoGroupTest", "two_group_test", "benjamini_hochberg"]

#: permutations per matrix product (bounds memory: ``chunk x m`` floats per temporary)
_CHUNK = 64
#: relative tolerance when comparing permuted squared statistics (float32) with the
#: observed one: a permuted t within it of the observed counts as at least as extreme
_REL_TOL = 1e-5


@dataclass(frozen=True)
class TwoGroupTest:
    """Per column (``[m]`` arrays): group means, their difference ``mean_a - mean_b``,
    Cohen's d, Welch's t and the permutation p-value; ``tested``: columns not constant
    over both groups (the others have NaN p)."""

    mean_a: np.ndarray
    mean_b: np.ndarray
    difference: np.ndarray
    effect_size: np.ndarray
    statistic: np.ndarray
    p_value: np.ndarray
    tested: np.ndarray
    n_a: int
    n_b: int

    def swapped(self) -> TwoGroupTest:
        """The same test read as ``b`` against ``a`` (two-sided: the same p-values)."""
        return TwoGroupTest(self.mean_b, self.mean_a, -self.difference, -self.effect_size,
                            -self.statistic, self.p_value, self.tested, self.n_b, self.n_a)


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values of ``p`` (NaN entries stay NaN and are not counted)."""
    from scipy.stats import false_discovery_control

    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        q[ok] = false_discovery_control(p[ok], method="bh")
    return q


def _welch(s1: torch.Tensor, s2: torch.Tensor, tot1: torch.Tensor, tot2: torch.Tensor,
           na: int, nb: int) -> torch.Tensor:
    """Welch's t from group-a sums ``s1``, sums of squares ``s2`` and column totals."""
    ma, mb = s1 / na, (tot1 - s1) / nb
    va = ((s2 - na * ma * ma) / (na - 1)).clamp_min(0)
    vb = ((tot2 - s2 - nb * mb * mb) / (nb - 1)).clamp_min(0)
    diff = ma - mb
    se = torch.sqrt(va / na + vb / nb)
    t = diff / se
    return torch.where(se > 0, t, torch.where(diff == 0, torch.zeros_like(t),
                                              torch.sign(diff) * torch.inf))


def _exceedances(Y: torch.Tensor, Y2: torch.Tensor, tot2: torch.Tensor, t_obs: torch.Tensor,
                 na: int, n_permutations: int, rng: np.random.RandomState) -> torch.Tensor:
    """Per column of the centred ``Y`` (``Y2``: its square), how many random relabellings
    give ``|t| >= |t_obs|``.

    With centred columns (total 0) and ``u = s1^2`` (``s1``: a relabelled group's sum,
    ``s2``: its sum of squares), ``t^2 = K u / (alpha s2 + beta u + gamma)``, so
    ``t^2 >= tau`` is ``(K - tau beta) u - tau alpha s2 >= tau gamma``: per permutation and
    column two products and a comparison, in float32 (``tau`` lowered by ``_REL_TOL``, so
    a relabelling whose t equals the observed one up to rounding counts). Columns whose
    observed ``t`` is infinite (both groups constant, different) count none.
    """
    n, m = Y.shape
    nb = n - na
    tau = t_obs.square() * (1 - _REL_TOL)
    finite = torch.isfinite(tau)
    tau = torch.where(finite, tau, torch.zeros_like(tau))
    K = (1 / na + 1 / nb) ** 2
    alpha = 1 / (na * (na - 1)) - 1 / (nb * (nb - 1))
    beta = -(1 / (na * na * (na - 1)) + 1 / (nb * nb * (nb - 1)))
    P = (K - tau * beta).float()
    Q = (tau * alpha).float()
    R = (tau * tot2 / (nb * (nb - 1))).float()
    Y32, Y2 = Y.float(), Y2.float()
    exceed = torch.zeros(m, dtype=torch.int64)
    done = 0
    while done < n_permutations:
        c = min(_CHUNK, n_permutations - done)
        M = torch.zeros(c, n, dtype=torch.float32)
        order = np.argsort(rng.random_sample((c, n)), axis=1)[:, :na]
        M[torch.arange(c)[:, None], torch.as_tensor(order)] = 1.0
        lhs = (M @ Y32).square_().mul_(P)
        lhs.sub_((M @ Y2).mul_(Q))
        exceed += (lhs >= R).sum(0)
        done += c
    return torch.where(finite, exceed, torch.zeros_like(exceed))


def two_group_test(values: Any, in_a: np.ndarray, in_b: np.ndarray, *, n_permutations: int,
                   rng: np.random.RandomState) -> TwoGroupTest:
    """Compare rows ``in_a`` with rows ``in_b`` (bool ``[n]``, disjoint) on every column of
    ``values`` (``[n, m]``, numpy or torch); see the module docstring."""
    in_a, in_b = np.asarray(in_a, dtype=bool), np.asarray(in_b, dtype=bool)
    if (in_a & in_b).any():
        raise ValueError("the two groups share rows")
    keep = np.flatnonzero(in_a | in_b)
    Y = torch.as_tensor(values)[torch.as_tensor(keep)].to(torch.float64)
    m = int(Y.shape[1])
    group = in_a[keep]
    na, nb = int(group.sum()), int((~group).sum())
    nan = np.full(m, np.nan)
    if na < 2 or nb < 2:
        mean_a = Y[torch.as_tensor(group)].mean(0).numpy() if na else nan
        mean_b = Y[torch.as_tensor(~group)].mean(0).numpy() if nb else nan
        return TwoGroupTest(mean_a, mean_b, mean_a - mean_b, nan, nan, nan,
                            np.zeros(m, dtype=bool), na, nb)
    centre = Y.mean(0)
    Y = Y - centre
    Y2 = Y * Y
    tot1, tot2 = Y.sum(0), Y2.sum(0)
    ga = torch.as_tensor(group, dtype=torch.float64)
    s1, s2 = ga @ Y, ga @ Y2
    t_obs = _welch(s1, s2, tot1, tot2, na, nb)
    exceed = _exceedances(Y, Y2, tot2, t_obs, na, n_permutations, rng)
    mean_a = (s1 / na + centre).numpy()
    mean_b = ((tot1 - s1) / nb + centre).numpy()
    var_a = ((s2 - s1 * s1 / na) / (na - 1)).clamp_min(0).numpy()
    var_b = ((tot2 - s2 - (tot1 - s1) ** 2 / nb) / (nb - 1)).clamp_min(0).numpy()
    pooled = np.sqrt(((na - 1) * var_a + (nb - 1) * var_b) / (na + nb - 2))
    diff = mean_a - mean_b
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(pooled > 0, diff / pooled, np.nan)
    tested = (Y.amax(0) > Y.amin(0)).numpy()
    p = np.where(tested, (1.0 + exceed.numpy()) / (n_permutations + 1.0), np.nan)
    return TwoGroupTest(mean_a, mean_b, diff, d, t_obs.numpy(), p, tested, na, nb)
