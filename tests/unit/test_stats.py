"""Pinned tests for sumcircuit.stats: hand-computed values and independent loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from sumcircuit.errors import SumcircuitError
from sumcircuit.stats import (
    PairedDiff,
    bh_qvalues,
    bootstrap_ci,
    fraction_negative_ci,
    gain_check,
    paired_bootstrap_diff,
    percentile_ci,
    percentile_rank,
    random_sets,
    ratio_bootstrap_ci,
    recovered,
    wilcoxon_p,
)


def _loop_ci(values, stat, n_boot, seed, confidence=0.95):
    """Independent reference: explicit gather of resampled rows, then numpy quantiles."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    boot = np.array([stat(values[i], axis=0) for i in idx])
    a = 1 - confidence
    return np.quantile(boot, [a / 2, 1 - a / 2], axis=0)


def test_bootstrap_ci_of_constant_is_the_constant():
    assert bootstrap_ci(np.full(17, 2.5)) == (2.5, 2.5)


def test_bootstrap_ci_two_points_hand_computed():
    # Resample means of [0, 1] with n=2 are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4;
    # with 2000 draws both tails (2.5%) sit at the extremes.
    assert bootstrap_ci(np.array([0.0, 1.0])) == (0.0, 1.0)


def test_bootstrap_ci_contains_mean_and_matches_loop():
    x = np.random.default_rng(1).normal(3.0, 2.0, size=50)
    lo, hi = bootstrap_ci(x, n_boot=500, seed=7)
    assert lo < x.mean() < hi
    ref = _loop_ci(x, np.mean, 500, 7)
    np.testing.assert_allclose([lo, hi], ref, rtol=1e-12)


def test_bootstrap_ci_generic_stat_matches_loop():
    x = np.random.default_rng(2).exponential(size=31)
    got = bootstrap_ci(x, n_boot=300, seed=3, stat=np.median)
    np.testing.assert_allclose(got, _loop_ci(x, np.median, 300, 3), rtol=1e-12)


def test_bootstrap_ci_seed_reproducible_and_seed_sensitive():
    x = np.random.default_rng(3).normal(size=40)
    assert bootstrap_ci(x, seed=11) == bootstrap_ci(x, seed=11)
    assert bootstrap_ci(x, seed=11) != bootstrap_ci(x, seed=12)


@pytest.mark.parametrize("stat", [np.mean, np.median])
def test_bootstrap_ci_2d_equals_per_column_1d(stat):
    x = np.random.default_rng(4).normal(size=(25, 6))
    lo, hi = bootstrap_ci(x, n_boot=400, seed=5, stat=stat)
    assert lo.shape == hi.shape == (6,)
    for j in range(6):
        lo_j, hi_j = bootstrap_ci(x[:, j], n_boot=400, seed=5, stat=stat)
        assert lo[j] == pytest.approx(lo_j, rel=1e-12, abs=1e-15)
        assert hi[j] == pytest.approx(hi_j, rel=1e-12, abs=1e-15)


def test_bootstrap_ci_rejects_bad_input():
    with pytest.raises(SumcircuitError, match="empty"):
        bootstrap_ci(np.array([]))
    with pytest.raises(SumcircuitError, match="NaN"):
        bootstrap_ci(np.array([1.0, np.nan]))
    with pytest.raises(SumcircuitError, match="confidence"):
        bootstrap_ci(np.ones(3), confidence=1.0)


def test_ratio_bootstrap_ci_constant_ratio_and_loop():
    den = np.random.default_rng(5).uniform(1, 2, size=30)
    assert ratio_bootstrap_ci(2.0 * den, den) == pytest.approx((2.0, 2.0), rel=1e-12)

    num = np.random.default_rng(6).normal(1, 1, size=30)
    rng = np.random.default_rng(9)
    idx = rng.integers(0, 30, size=(300, 30))
    boot = num[idx].mean(1) / den[idx].mean(1)
    ref = np.quantile(boot, [0.025, 0.975])
    np.testing.assert_allclose(ratio_bootstrap_ci(num, den, n_boot=300, seed=9), ref, rtol=1e-12)


def test_ratio_bootstrap_ci_rejects_unpaired():
    with pytest.raises(SumcircuitError, match="paired"):
        ratio_bootstrap_ci(np.ones(3), np.ones(4))


def test_paired_bootstrap_diff_identical_arms():
    a = np.random.default_rng(7).uniform(size=20)
    res = paired_bootstrap_diff(a, a.copy())
    assert isinstance(res, PairedDiff)
    assert res == PairedDiff(0.0, (0.0, 0.0), 1.0, 20)


def test_paired_bootstrap_diff_clear_improvement():
    b = np.random.default_rng(8).uniform(size=40)
    a = b + 0.1 + np.random.default_rng(9).uniform(0, 0.01, size=40)
    res = paired_bootstrap_diff(a, b, n_boot=1000, seed=1)
    assert res.mean_diff == pytest.approx(float(np.mean(a - b)))
    assert 0.1 < res.ci95[0] <= res.mean_diff <= res.ci95[1] < 0.11
    assert res.p_value == 0.0
    assert res.n == 40
    # Swapping arms mirrors the interval and keeps the two-sided p-value.
    swapped = paired_bootstrap_diff(b, a, n_boot=1000, seed=1)
    assert swapped.ci95 == pytest.approx((-res.ci95[1], -res.ci95[0]))
    assert swapped.p_value == res.p_value


def test_paired_bootstrap_diff_length_mismatch():
    with pytest.raises(SumcircuitError, match="same examples"):
        paired_bootstrap_diff(np.ones(3), np.ones(2))


def test_wilcoxon_known_case_and_all_zero_column():
    d = np.zeros((10, 3))
    d[:, 1] = np.arange(1, 11)  # all positive: exact two-sided p = 2 / 2**10
    d[:, 2] = np.random.default_rng(10).normal(size=10)
    p = wilcoxon_p(d)
    assert p.shape == (3,)
    assert p[0] == 1.0
    assert p[1] == pytest.approx(2 / 2**10, rel=1e-12)
    assert p[2] == pytest.approx(scipy.stats.wilcoxon(d[:, 2]).pvalue, rel=1e-12)
    assert wilcoxon_p(d[:, 1]).shape == ()


def test_bh_qvalues_hand_computed():
    # sorted p: 0.005, 0.01, 0.03, 0.04 → p·m/rank: 0.02, 0.02, 0.04, 0.04 (already monotone)
    np.testing.assert_allclose(bh_qvalues([0.01, 0.04, 0.03, 0.005]), [0.02, 0.04, 0.04, 0.02])
    # sorted p: 0.03, 0.04, 0.2 → 0.09, 0.06, 0.2 → step-up minimum gives 0.06, 0.06, 0.2
    np.testing.assert_allclose(bh_qvalues([0.04, 0.03, 0.2]), [0.06, 0.06, 0.2])


def test_bh_qvalues_nan_safe_and_shape():
    q = bh_qvalues(np.array([[0.04, np.nan], [0.03, 0.2]]))
    assert q.shape == (2, 2)
    assert math.isnan(q[0, 1])
    np.testing.assert_allclose(q[[0, 1, 1], [0, 0, 1]], [0.06, 0.06, 0.2])
    assert np.isnan(bh_qvalues([np.nan, np.nan])).all()


def test_fraction_negative_ci_hand_computed():
    # Heads 0 and 2 are negative on every document, head 1 positive: every resample gives 2/3.
    deltas = np.tile([-1.0, 1.0, -2.0], (12, 1))
    frac, (lo, hi) = fraction_negative_ci(deltas)
    assert frac == pytest.approx(2 / 3)
    assert (lo, hi) == pytest.approx((2 / 3, 2 / 3))


def test_fraction_negative_ci_matches_loop():
    deltas = np.random.default_rng(11).normal(-0.05, 1.0, size=(30, 20))
    frac, (lo, hi) = fraction_negative_ci(deltas, n_boot=300, seed=4)
    assert frac == np.mean(deltas.mean(0) < 0)
    idx = np.random.default_rng(4).integers(0, 30, size=(300, 30))
    boot = np.array([np.mean(deltas[i].mean(0) < 0) for i in idx])
    np.testing.assert_allclose([lo, hi], np.quantile(boot, [0.025, 0.975]))
    assert lo <= frac <= hi


def test_percentile_rank_counts_ties_as_half() -> None:
    assert percentile_rank(np.float64(0.5), np.array([0.1, 0.5, 0.9, 0.2])) == pytest.approx(62.5)
    assert percentile_rank(np.array([1.0, -1.0]), np.array([[0.0, 0.0], [0.0, 0.0]])).tolist() == [
        100.0,
        0.0,
    ]


def test_random_sets_are_distinct_seeded_and_never_the_circuit() -> None:
    sets = random_sets(list(range(6)), 2, 10, (1, 3), seed=5)
    assert len(set(sets)) == 10 and (1, 3) not in sets
    assert all(len(s) == 2 and list(s) == sorted(s) for s in sets)
    assert sets == random_sets(list(range(6)), 2, 10, (1, 3), seed=5)
    assert sets != random_sets(list(range(6)), 2, 10, (1, 3), seed=6)
    big = random_sets(list(range(200)), 5, 30, (0, 1, 2, 3, 4), seed=0)  # rejection path
    assert len(set(big)) == 30 and (0, 1, 2, 3, 4) not in big


def test_random_sets_too_many_names_both_numbers() -> None:
    with pytest.raises(SumcircuitError, match=r"--controls 15 .* only 14 distinct"):
        random_sets(list(range(6)), 2, 15, (1, 3), seed=0)


def test_recovered_is_a_ratio_of_sums_and_refuses_no_change() -> None:
    num = np.array([[1.0, 0.0], [3.0, 2.0]])
    den = np.array([2.0, 2.0])
    value, lo, hi = recovered(num, den, n_boot=200, seed=0, min_delta=1e-6)
    assert value.tolist() == [1.0, 0.5]
    assert np.all(lo <= value) and np.all(value <= hi)
    with pytest.raises(SumcircuitError, match="nothing to explain"):
        recovered(num, np.array([1e-9, -1e-9]), n_boot=200, seed=0, min_delta=1e-6)


def test_recovered_warns_when_the_gain_is_negative_or_not_established(caplog) -> None:
    num = np.ones((4, 1))
    with caplog.at_level("WARNING"):
        recovered(num, np.array([1.0, 1.1, 0.9, 1.0]), n_boot=200, seed=0, min_delta=1e-6)
    assert not caplog.records  # a clear gain: silent
    with caplog.at_level("WARNING"):
        recovered(num, np.array([-1.0, -1.1, -0.9, -1.0]), n_boot=200, seed=0, min_delta=1e-6)
    assert "is negative" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        recovered(num, np.array([2.0, -1.0, 1.5, -1.5]), n_boot=200, seed=0, min_delta=1e-6)
    assert "spans 0" in caplog.text
    flags = gain_check(np.array([2.0, -1.0, 1.5, -1.5]), n_boot=200, seed=0, warn=False)
    assert (flags["negative"], flags["ci_spans_zero"]) == (False, True)
    assert flags["value"] == pytest.approx(0.25)
    flags = gain_check(-np.ones(3) - np.arange(3) / 10, n_boot=200, seed=0, warn=False)
    assert (flags["negative"], flags["ci_spans_zero"]) == (True, False)


def test_percentile_ci_of_a_clearly_best_circuit_is_100() -> None:
    rng = np.random.default_rng(0)
    den = 1.0 + rng.random(30)
    num = np.column_stack([den, 0.1 * rng.random((30, 5))])  # circuit recovers everything
    assert percentile_ci(num, den, n_boot=200, seed=0) == (100.0, 100.0)
