"""Bootstrap intervals of the ratio of means.

Oracles: the package's ``ratio_of_means`` on explicitly resampled and left-out rows (a
recomputation written another way), scipy's own ``bootstrap`` (BCa and percentile, its
own resamples: agreement within the Monte-Carlo error), and coverage on synthetic values
with a known ratio. Coverage: 400 data sets, each with its own resamples, so the share of
intervals holding the true ratio has binomial spread sqrt(0.95 * 0.05 / 400) = 0.011 at
the nominal level; the test allows 3 of those (0.033) on either side.
"""

import numpy as np
import pytest

from auto_circuit_dcd.evaluation.faithfulness import ratio_of_means
from auto_circuit_dcd.metrics.uncertainty.bootstrap import (
    Bootstrap,
    expanded_alpha,
    ratio_replicates,
    resample_weights,
)


def values(n, seed, rho=0.6):
    """Per-example mu of a circuit, the full model and the empty circuit; true f = rho."""
    rng = np.random.default_rng(seed)
    full, empty = rng.normal(4, 1.5, n), rng.normal(0, 1, n)
    mu = empty + rng.normal(rho, 0.2, n) * (full - empty) + rng.normal(0, 0.5, n)
    return mu, full, empty


def replicates(mu, full, empty, weights):
    return ratio_replicates((mu - empty)[:, None], full - empty, weights)


def test_resamples_and_leave_one_out_are_the_ratio_of_means_recomputed():
    mu, full, empty = values(12, 0)
    w = resample_weights(12, 200, 5)
    assert w.shape == (200, 12) and np.all(w.sum(1) == 12)
    np.testing.assert_array_equal(w, resample_weights(12, 200, 5))  # the same plan
    reps = replicates(mu, full, empty, w)
    np.testing.assert_allclose(reps.estimate, [ratio_of_means(mu, full, empty)], rtol=1e-12)
    for b in range(0, 200, 37):
        rows = np.repeat(np.arange(12), w[b].astype(int))  # the drawn examples, listed
        np.testing.assert_allclose(reps.resampled[b, 0],
                                   ratio_of_means(mu[rows], full[rows], empty[rows]),
                                   rtol=1e-12)
    for i in range(12):
        rows = np.delete(np.arange(12), i)
        np.testing.assert_allclose(reps.jackknife[i, 0],
                                   ratio_of_means(mu[rows], full[rows], empty[rows]),
                                   rtol=1e-12)


@pytest.mark.parametrize("method,scipy_method", [("bca", "BCa"), ("percentile", "percentile")])
def test_intervals_agree_with_scipys_bootstrap(method, scipy_method):
    from scipy.stats import bootstrap

    mu, full, empty = values(30, 1)
    b = 20000
    reps = replicates(mu, full, empty, resample_weights(30, b, 0))
    low, high = reps.interval(0.95, method)

    def stat(m, f, e, axis=-1):
        return (m.mean(axis) - e.mean(axis)) / (f.mean(axis) - e.mean(axis))

    ref = bootstrap((mu, full, empty), stat, paired=True, vectorized=True, n_resamples=b,
                    method=scipy_method, random_state=1).confidence_interval
    se = reps.resampled[:, 0].std()
    # two independent sets of 20000 resamples: the bounds differ by Monte-Carlo error only,
    # a few hundredths of the standard error
    assert abs(low[0] - ref.low) < 0.06 * se and abs(high[0] - ref.high) < 0.06 * se


@pytest.mark.parametrize("n", [10, 40])
def test_coverage_of_the_default_interval_is_near_the_nominal_level(n):
    n_sets, hits = 400, 0
    for s in range(n_sets):
        mu, full, empty = values(n, 1000 + s)
        reps = replicates(mu, full, empty, resample_weights(n, 1000, s))
        low, high = reps.interval(0.95, Bootstrap().method)
        hits += int(low[0] <= 0.6 <= high[0])
    assert abs(hits / n_sets - 0.95) <= 3 * np.sqrt(0.95 * 0.05 / n_sets)


def test_the_expanded_percentile_widens_the_percentile_by_hesterbergs_rule():
    from scipy.stats import norm, t

    # n = 10: alpha' / 2 = Phi(-sqrt(10/9) t_9(0.975)) = Phi(-2.3866) = 0.0085
    assert expanded_alpha(np.array([10]), 0.95)[0] / 2 == pytest.approx(
        norm.cdf(-np.sqrt(10 / 9) * t.ppf(0.975, 9)), rel=1e-12)
    assert expanded_alpha(np.array([10]), 0.95)[0] / 2 == pytest.approx(0.0085, abs=1e-4)
    assert np.isnan(expanded_alpha(np.array([1]), 0.95)[0])
    mu, full, empty = values(10, 4)
    reps = replicates(mu, full, empty, resample_weights(10, 4000, 0))
    lo, hi = reps.interval(0.95, "expanded-percentile")
    np.testing.assert_allclose([lo[0], hi[0]], np.quantile(reps.resampled[:, 0],
                                                           [0.0085, 1 - 0.0085]), atol=2e-3)


def test_a_constant_statistic_gets_a_zero_width_interval_and_an_empty_one_nan():
    mu, full, empty = values(10, 2)
    w = resample_weights(10, 500, 0)
    # the empty circuit (mu = mu(empty)) is 0 and the full model 1 on every resample
    reps = ratio_replicates(np.stack([np.zeros(10), full - empty], 1), full - empty, w)
    for method in ("expanded-percentile", "bca", "percentile"):
        low, high = reps.interval(0.95, method)
        np.testing.assert_allclose(low, [0.0, 1.0], rtol=0, atol=1e-12)
        np.testing.assert_allclose(high, [0.0, 1.0], rtol=0, atol=1e-12)
    # a statistic on no example is undefined everywhere
    none = ratio_replicates(np.zeros((10, 1)), np.zeros(10), w)
    assert np.isnan(none.estimate).all() and np.isnan(none.interval(0.95)).all()


def test_a_group_absent_from_some_resamples_still_gets_an_interval():
    mu, full, empty = values(20, 3)
    rows = np.zeros(20, dtype=bool)
    rows[:2] = True  # two examples: missing from about 1 resample in 9
    w = resample_weights(20, 2000, 0)
    reps = ratio_replicates(((mu - empty) * rows)[:, None], (full - empty) * rows, w)
    missing = (w[:, :2].sum(1) == 0).mean()
    assert 0.05 < missing < 0.2 and np.isnan(reps.resampled[:, 0]).mean() == missing
    low, high = reps.interval(0.95)
    assert low[0] <= reps.estimate[0] <= high[0]
    assert reps.n_examples[0] == 2


def test_the_plan_refuses_bad_settings():
    for kw, what in (({"n_resamples": 10}, "n_resamples"), ({"level": 1.0}, "level"),
                     ({"method": "basic"}, "interval method")):
        with pytest.raises(ValueError, match=what):
            Bootstrap(**kw)
    assert Bootstrap().alpha == pytest.approx(0.05)
