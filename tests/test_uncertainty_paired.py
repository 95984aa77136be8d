"""Paired sign-flip tests and corrections across a family.

Oracles: an exact p-value enumerated by hand; the one-sample t-test (scipy) for large
normal samples, where the sign-flip distribution of t approaches Student's; a planted
difference that must be found and a planted null whose false-positive rate over 400 data
sets must lie within 3 binomial standard errors (sqrt(0.05 * 0.95 / 400) = 0.011) of the
level; Holm and Benjamini-Hochberg adjusted p-values computed by hand, and scipy's
``false_discovery_control`` for Benjamini-Hochberg.
"""

import numpy as np
import pytest

from auto_circuit_dcd.metrics.uncertainty.paired import (
    CORRECTIONS,
    benjamini_hochberg,
    holm,
    sign_flip_pvalues,
)


def test_exact_p_value_by_hand():
    # delta = (1, 2, 3): t = 2 / (1 / sqrt 3) = 3.46. Of the 8 sign vectors only (+,+,+) and
    # (-,-,-) reach |t| = 3.46 (e.g. (-1, 2, 3): mean 4/3, sd 2.08, t = 1.11): p = 2/8
    assert sign_flip_pvalues(np.array([1.0, 2.0, 3.0]), n_flips=2000)[0] == pytest.approx(0.25)
    # columns are separate tests; all-zero differences are no evidence (p = 1)
    p = sign_flip_pvalues(np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]]), n_flips=2000)
    np.testing.assert_allclose(p, [0.25, 1.0])
    assert np.isnan(sign_flip_pvalues(np.zeros((0, 2)))).all()


def test_random_flips_match_the_t_test_on_a_large_normal_sample():
    from scipy.stats import ttest_1samp

    rng = np.random.default_rng(0)
    for shift in (0.0, 0.1, 0.2):
        delta = rng.normal(shift, 1.0, 200)
        p = sign_flip_pvalues(delta, n_flips=20000, seed=1)[0]
        assert abs(p - ttest_1samp(delta, 0.0).pvalue) < 0.02


def test_a_planted_difference_is_found_and_a_planted_null_is_not():
    found = false_positives = 0
    n_sets = 400
    for s in range(n_sets):
        rng = np.random.default_rng(s)
        base = rng.normal(2.0, 1.0, 40)
        a = base + rng.normal(0, 0.5, 40)
        found += int(sign_flip_pvalues((a + 0.5) - base, 1000, s)[0] < 0.05)
        false_positives += int(sign_flip_pvalues(a - base, 1000, s)[0] < 0.05)
    assert found == n_sets  # a shift of one standard deviation of the differences
    assert abs(false_positives / n_sets - 0.05) <= 3 * np.sqrt(0.05 * 0.95 / n_sets)


def test_holm_and_benjamini_hochberg_by_hand():
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan])
    # Holm, ascending 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04,
    # kept non-decreasing: 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02, np.nan])
    # BH: times 4/1, 4/2, 4/3, 4/4 = 0.02, 0.02, 0.04, 0.04, kept non-decreasing from the top
    np.testing.assert_allclose(benjamini_hochberg(p), [0.02, 0.04, 0.04, 0.02, np.nan])
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])  # capped at 1
    np.testing.assert_allclose(CORRECTIONS["none"](p), p)


def test_benjamini_hochberg_matches_scipy():
    from scipy.stats import false_discovery_control

    p = np.random.default_rng(3).uniform(0, 0.2, 25)
    np.testing.assert_allclose(benjamini_hochberg(p), false_discovery_control(p), rtol=1e-12)
