"""analysis.stats: bootstrap coverage, subsampling, the tests and Benjamini-Hochberg."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pytest
from scipy import stats as scipy_stats

from analysis.stats import (
    benjamini_hochberg,
    bootstrap_delta,
    fisher_ok,
    mann_whitney,
    ratio_ci_cost_per_success,
)

TRUE_CHANGE = 0.2  # candidate = baseline distribution × 1.2: every quantile and the mean move 20%


@pytest.mark.parametrize(("stat", "n"), [("p50", 200), ("p95", 400)])
def test_bootstrap_interval_covers_the_true_change_about_95_percent(
    stat: Literal["p50", "p95"], n: int
) -> None:
    """Over 200 simulated replays the 95% interval holds the true change 88-99% of the time."""
    rng = np.random.default_rng(42)
    covered = 0
    for rep in range(200):
        baseline = rng.lognormal(6.0, 0.5, n)
        candidate = rng.lognormal(6.0, 0.5, n) * (1 + TRUE_CHANGE)
        _, lo, hi = bootstrap_delta(baseline, candidate, stat, n_boot=300, seed=rep)
        covered += lo <= TRUE_CHANGE <= hi
    assert 0.88 <= covered / 200 <= 0.99


def test_bootstrap_point_is_the_relative_change_of_the_statistic() -> None:
    """The point estimate is candidate_stat / baseline_stat − 1 on all values, NaNs dropped."""
    baseline = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    candidate = np.array([2.0, 3.0, 4.0, 5.0])
    point, lo, hi = bootstrap_delta(baseline, candidate, "p50", n_boot=200)
    assert point == pytest.approx(3.5 / 2.5 - 1)
    assert lo <= point <= hi
    custom, _, _ = bootstrap_delta(baseline, candidate, lambda x: np.max(x, axis=-1), n_boot=50)
    assert custom == pytest.approx(5.0 / 4.0 - 1)


def test_bootstrap_is_reproducible_with_a_seed() -> None:
    """The same seed gives the same interval; another seed a different one."""
    rng = np.random.default_rng(0)
    a, b = rng.exponential(1.0, 500), rng.exponential(1.1, 500)
    assert bootstrap_delta(a, b, "p95", seed=3) == bootstrap_delta(a, b, "p95", seed=3)
    assert bootstrap_delta(a, b, "p95", seed=3) != bootstrap_delta(a, b, "p95", seed=4)


def test_bootstrap_subsamples_large_arms_to_max_n() -> None:
    """A million values per arm are bounded to max_n and the interval still holds the change."""
    rng = np.random.default_rng(5)
    baseline = rng.lognormal(6.0, 0.5, 1_000_000)
    candidate = rng.lognormal(6.0, 0.5, 1_000_000) * (1 + TRUE_CHANGE)
    point, lo, hi = bootstrap_delta(baseline, candidate, "p99", n_boot=200, max_n=5_000)
    assert point == pytest.approx(TRUE_CHANGE, abs=0.02)
    assert lo < TRUE_CHANGE < hi
    assert hi - lo < 0.3


def test_unknown_stat_and_empty_arm_are_refused() -> None:
    """A statistic name outside mean/p50/p95/p99, or an arm without values, raises ValueError."""
    with pytest.raises(ValueError, match="p42"):
        bootstrap_delta([1.0], [1.0], "p42")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="baseline has no finite values"):
        bootstrap_delta([np.nan], [1.0], "mean")


def test_cost_per_success_ratio_point_and_coverage() -> None:
    """Σcost/Σok per arm gives the point by hand, and its interval covers a known 20% rise."""
    point, _, _ = ratio_ci_cost_per_success(
        [1.0, 1.0, 2.0], [1, 0, 1], [3.0, 3.0], [1, 1], n_boot=50
    )
    assert point == pytest.approx((6.0 / 2) / (4.0 / 2) - 1)
    rng = np.random.default_rng(9)
    covered = 0
    for rep in range(100):
        n = 400
        base_cost = rng.gamma(2.0, 0.001, n)
        cand_cost = rng.gamma(2.0, 0.001, n) * (1 + TRUE_CHANGE)
        base_ok, cand_ok = rng.random(n) < 0.9, rng.random(n) < 0.9
        _, lo, hi = ratio_ci_cost_per_success(
            base_cost, base_ok, cand_cost, cand_ok, n_boot=400, seed=rep
        )
        covered += lo <= TRUE_CHANGE <= hi
    assert 0.85 <= covered / 100 <= 1.0


def test_mann_whitney_and_fisher_match_scipy() -> None:
    """The wrappers return scipy's two-sided p-values."""
    a, b = [1.0, 2.0, 3.0, 4.0, 5.0], [3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    assert mann_whitney(a, b) == pytest.approx(
        scipy_stats.mannwhitneyu(a, b, alternative="two-sided").pvalue
    )
    assert fisher_ok(90, 100, 80, 100) == pytest.approx(
        scipy_stats.fisher_exact([[90, 10], [80, 20]]).pvalue
    )
    assert fisher_ok(5, 5, 5, 5) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="6 successes of 5"):
        fisher_ok(6, 5, 1, 5)


def test_benjamini_hochberg_against_a_hand_example() -> None:
    """BH of [0.01, 0.04, 0.03, 0.005] (m=4) is [0.02, 0.04, 0.04, 0.02], in input order."""
    # sorted: 0.005×4/1=0.02, 0.01×4/2=0.02, 0.03×4/3=0.04, 0.04×4/4=0.04
    adjusted = benjamini_hochberg([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.02, 0.04, 0.04, 0.02])


def test_benjamini_hochberg_enforces_monotonicity_caps_and_keeps_nan() -> None:
    """A larger p-value never gets a smaller adjustment, results cap at 1 and NaN stays NaN."""
    adjusted = benjamini_hochberg([0.02, 0.021, np.nan, 0.9])
    # m=3: 0.02×3=0.06, 0.021×3/2=0.0315 → min from above gives 0.0315 for both, 0.9
    np.testing.assert_allclose(adjusted, [0.0315, 0.0315, np.nan, 0.9])
    assert benjamini_hochberg([0.6, 0.7])[0] <= 1.0


def test_order_statistic_intervals_cover_the_true_quantile_ratio() -> None:
    """The large-sample interval for a p95 ratio covers the truth at least ~95% of the time."""
    from analysis.stats import quantile_ratio_ci

    rng = np.random.default_rng(5)
    true_change = 0.2  # the candidate is 1.2x the baseline at every quantile
    covered = 0
    for _ in range(200):
        base = rng.lognormal(5.0, 0.5, size=3000)
        cand = rng.lognormal(5.0, 0.5, size=3000) * (1 + true_change)
        change, lo, hi = quantile_ratio_ci(base, cand, 0.95)
        assert lo <= change <= hi
        covered += lo <= true_change <= hi
    assert covered >= 0.93 * 200
