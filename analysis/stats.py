"""Statistics for comparing two arms: bootstrap intervals of relative changes, tests, FDR.

Every interval here is a 95% percentile bootstrap of the *relative change*
``candidate_stat / baseline_stat - 1``, resampling each arm on its own, vectorised with numpy:
a whole block of resamples is one ``(rows, n)`` index matrix and one reduction along its rows.
Blocks are sized so that no matrix exceeds about :data:`_BLOCK_ELEMENTS` elements.

When an arm has more than ``max_n`` values, the bootstrap draws from a random subsample of
``max_n`` of them (without replacement) so time and memory stay bounded. The point estimate is
still computed on all the values, but the interval then reflects the subsample: it is wider
than the full sample's would be (conservative), never narrower.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from scipy import stats as _scipy_stats

__all__ = [
    "StatFn",
    "benjamini_hochberg",
    "bootstrap_delta",
    "cost_per_success_ratio_delta",
    "fisher_ok",
    "ks_two_sample",
    "mann_whitney",
    "mean_difference_ci",
    "order_ranks",
    "paired_difference_ci",
    "quantile_ratio_ci",
    "ratio_ci_cost_per_success",
]

FloatArray = npt.NDArray[np.float64]
StatFn = Callable[[FloatArray], FloatArray]
"""A statistic: reduces a ``(rows, n)`` array along its last axis to ``(rows,)``."""
StatName = Literal["p50", "p95", "p99", "mean"]

_BLOCK_ELEMENTS: Final = 4_000_000
_QUANTILES: Final = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
_LEVEL: Final = 0.95


def _stat_fn(stat: StatFn | str) -> StatFn:
    if callable(stat):
        return stat
    if stat == "mean":
        return lambda x: np.asarray(np.mean(x, axis=-1), dtype=np.float64)
    if stat in _QUANTILES:
        return _quantile_fn(_QUANTILES[stat])
    raise ValueError(f"stat is {stat!r}; it must be one of mean, p50, p95, p99 or a function")


def _quantile_fn(q: float) -> StatFn:
    """numpy's default (linear) quantile along the last axis, from two partitioned order stats.

    A partition around the two neighbouring ranks is about twice as fast as ``np.quantile``.
    """

    def quantile(x: FloatArray) -> FloatArray:
        n = x.shape[-1]
        position = q * (n - 1)
        k = int(np.floor(position))
        upper = min(k + 1, n - 1)
        part = np.partition(x, sorted({k, upper}), axis=-1)
        lo, hi = part[..., k], part[..., upper]
        return np.asarray(lo + (hi - lo) * (position - k), dtype=np.float64)

    return quantile


def _values(name: str, values: npt.ArrayLike) -> FloatArray:
    """The finite values of a 1-D array as float64 (NaN stands for NULL and is dropped)."""
    array = np.asarray(values, dtype=np.float64).ravel()
    array = array[np.isfinite(array)]
    if array.size == 0:
        raise ValueError(f"{name} has no finite values; a statistic needs at least one")
    return array


def _bounded(array: FloatArray, max_n: int, rng: np.random.Generator) -> FloatArray:
    if array.size <= max_n:
        return array
    return rng.choice(array, size=max_n, replace=False)


def _resampled(
    array: FloatArray, stat: StatFn, n_boot: int, rng: np.random.Generator
) -> FloatArray:
    """``stat`` of ``n_boot`` resamples (with replacement) of ``array``."""
    n = array.size
    rows = max(1, _BLOCK_ELEMENTS // n)
    out = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        index = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = stat(array[index])
    return out


def _interval(point: float, replicates: FloatArray) -> tuple[float, float, float]:
    tail = (1 - _LEVEL) / 2 * 100
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return point, float("nan"), float("nan")
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return point, float(lo), float(hi)


def _check_bootstrap(n_boot: int, max_n: int) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot is {n_boot}; it must be >= 1")
    if max_n < 1:
        raise ValueError(f"max_n is {max_n}; it must be >= 1")


def bootstrap_delta(
    baseline: npt.ArrayLike,
    candidate: npt.ArrayLike,
    stat: StatFn | StatName = "p50",
    *,
    n_boot: int = 1000,
    seed: int = 0,
    max_n: int = 20_000,
) -> tuple[float, float, float]:
    """``(point, lo, hi)``: the relative change of ``stat`` from baseline to candidate.

    ``point = stat(candidate) / stat(baseline) - 1`` on all values; ``lo`` and ``hi`` bound a
    95% percentile bootstrap interval (each arm resampled on its own). NaNs (NULLs) are
    dropped. A baseline statistic of 0 gives NaN.

    Args:
        stat: ``"p50"``, ``"p95"``, ``"p99"`` (linear interpolation) or ``"mean"``, or a
            function reducing a ``(rows, n)`` array along its last axis.
        max_n: larger arms are subsampled to this many values first (module docstring).
    """
    _check_bootstrap(n_boot, max_n)
    fn = _stat_fn(stat)
    base = _values("baseline", baseline)
    cand = _values("candidate", candidate)
    with np.errstate(divide="ignore", invalid="ignore"):
        point = float(fn(cand[np.newaxis, :])[0] / fn(base[np.newaxis, :])[0] - 1)
        rng = np.random.default_rng(seed)
        base_boot = _resampled(_bounded(base, max_n, rng), fn, n_boot, rng)
        cand_boot = _resampled(_bounded(cand, max_n, rng), fn, n_boot, rng)
        replicates = cand_boot / base_boot - 1
    return _interval(point, replicates)


def _cost_per_success_boot(
    cost: FloatArray, ok: npt.NDArray[np.bool_], n_boot: int, rng: np.random.Generator
) -> FloatArray:
    n = cost.size
    rows = max(1, _BLOCK_ELEMENTS // n)
    out = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        index = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = cost[index].sum(axis=1) / ok[index].sum(axis=1)
    return out


def _attempts(
    name: str, cost: npt.ArrayLike, ok: npt.ArrayLike
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    costs = np.nan_to_num(np.asarray(cost, dtype=np.float64).ravel(), nan=0.0)
    oks = np.asarray(ok, dtype=np.bool_).ravel()
    if costs.size != oks.size:
        raise ValueError(f"{name}: cost has {costs.size} values and ok {oks.size}; one per attempt")
    if costs.size == 0:
        raise ValueError(f"{name} has no attempts")
    return costs, oks


def ratio_ci_cost_per_success(
    baseline_cost: npt.ArrayLike,
    baseline_ok: npt.ArrayLike,
    candidate_cost: npt.ArrayLike,
    candidate_ok: npt.ArrayLike,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    max_n: int = 20_000,
) -> tuple[float, float, float]:
    """``(point, lo, hi)``: the relative change of cost per success (Σ cost / Σ ok) per arm.

    One value per attempt in each array (retries included, as ``docs/architecture.md``,
    "Metric definitions", counts cost); a NaN cost (unknown) counts as 0, as SQL's ``sum``
    skips it. Attempts are resampled as rows, each arm on its own; a resample without a
    success gives no replicate.
    """
    _check_bootstrap(n_boot, max_n)
    base_cost, base_ok = _attempts("baseline", baseline_cost, baseline_ok)
    cand_cost, cand_ok = _attempts("candidate", candidate_cost, candidate_ok)
    rng = np.random.default_rng(seed)

    def bounded(
        cost: FloatArray, ok: npt.NDArray[np.bool_]
    ) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
        if cost.size <= max_n:
            return cost, ok
        keep = rng.choice(cost.size, size=max_n, replace=False)
        return cost[keep], ok[keep]

    with np.errstate(divide="ignore", invalid="ignore"):
        point = float((cand_cost.sum() / cand_ok.sum()) / (base_cost.sum() / base_ok.sum()) - 1)
        base_boot = _cost_per_success_boot(*bounded(base_cost, base_ok), n_boot, rng)
        cand_boot = _cost_per_success_boot(*bounded(cand_cost, cand_ok), n_boot, rng)
        replicates = cand_boot / base_boot - 1
    return _interval(point, replicates)


def mann_whitney(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Two-sided Mann-Whitney U p-value that ``a`` and ``b`` come from one distribution."""
    x = _values("a", a)
    y = _values("b", b)
    return float(_scipy_stats.mannwhitneyu(x, y, alternative="two-sided").pvalue)


def ks_two_sample(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Two-sided Kolmogorov-Smirnov p-value that ``a`` and ``b`` share one distribution
    (used on output token counts: a change in answer length shows up here)."""
    x = _values("a", a)
    y = _values("b", b)
    # scipy's "auto" tries the exact distribution and warns when it gives up on large samples;
    # the asymptotic one is accurate there, so ask for it directly.
    method = "exact" if x.size * y.size <= 10_000 else "asymp"
    return float(_scipy_stats.ks_2samp(x, y, alternative="two-sided", method=method).pvalue)


def mean_difference_ci(
    a: npt.ArrayLike, b: npt.ArrayLike, *, level: float = 0.95
) -> tuple[float, float, float]:
    """``(mean(a) − mean(b), lo, hi)`` with a normal (Welch) interval; NaNs are skipped.

    Used for excess divergence (candidate divergence − noise floor): both are means of
    per-trace values in [0, 1] over hundreds of traces, where the normal interval is accurate.
    """
    x, y = _finite(a), _finite(b)
    if x.size < 2 or y.size < 2:
        return math.nan, math.nan, math.nan
    diff = float(x.mean() - y.mean())
    se = math.sqrt(x.var(ddof=1) / x.size + y.var(ddof=1) / y.size)
    z = float(_scipy_stats.norm.ppf(0.5 + level / 2))
    return diff, diff - z * se, diff + z * se


def cost_per_success_ratio_delta(
    baseline: tuple[int, float, float, float, int],
    candidate: tuple[int, float, float, float, int],
    *,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """Relative change of cost per success from sums alone, by the delta method (large n).

    Each arm is ``(n, Σcost, Σcost², Σcost·ok, Σok)`` over its attempts. For the ratio
    estimator R = Σcost / Σok, Var(R) ≈ Σ(cost − R·ok)² / (Σok)² (ok is 0 or 1, so
    ok² = ok); the interval is built on log R, candidate minus baseline, and mapped back to a
    relative change. Accurate once each arm has thousands of attempts; below that use
    :func:`ratio_ci_cost_per_success` (the bootstrap).
    """
    logs: list[float] = []
    variances: list[float] = []
    for n, total, squares, cost_ok, oks in (baseline, candidate):
        if n <= 0 or oks <= 0 or total <= 0:
            return math.nan, math.nan, math.nan
        ratio = total / oks
        residual = max(squares - 2 * ratio * cost_ok + ratio * ratio * oks, 0.0)
        logs.append(math.log(ratio))
        variances.append(residual / (oks * oks) / (ratio * ratio))
    z = float(_scipy_stats.norm.ppf(0.5 + level / 2))
    center = logs[1] - logs[0]
    spread = z * math.sqrt(variances[0] + variances[1])
    return math.expm1(center), math.expm1(center - spread), math.expm1(center + spread)


def order_ranks(n: int, q: float, level: float) -> tuple[int, int]:
    """0-based ranks (lo, hi) of the order statistics that bracket the ``q`` quantile of ``n``
    sorted values with probability at least ``level`` (binomial, distribution-free)."""
    alpha = 1.0 - level
    lo_rank = max(0, int(_scipy_stats.binom.ppf(alpha / 2, n, q)) - 1)
    hi_rank = min(n - 1, int(_scipy_stats.binom.ppf(1 - alpha / 2, n, q)))
    return lo_rank, hi_rank


def fisher_ok(ok_a: int, n_a: int, ok_b: int, n_b: int) -> float:
    """Two-sided Fisher exact p-value that two arms have the same success rate."""
    for name, ok, n in (("a", ok_a, n_a), ("b", ok_b, n_b)):
        if not 0 <= ok <= n:
            raise ValueError(f"arm {name} has {ok} successes of {n}; need 0 <= ok <= n")
    table = [[ok_a, n_a - ok_a], [ok_b, n_b - ok_b]]
    return float(_scipy_stats.fisher_exact(table, alternative="two-sided").pvalue)


def benjamini_hochberg(pvalues: Sequence[float] | npt.ArrayLike) -> FloatArray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), in the input's order.

    ``adjusted[i] = min over j with rank(j) >= rank(i) of p[j] * m / rank(j)``, capped at 1.
    NaNs stay NaN and do not count towards ``m``.
    """
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    if valid.size == 0:
        return out
    if np.any((p[valid] < 0) | (p[valid] > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    m = valid.size
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out[order] = np.minimum(adjusted, 1.0)
    return out


def quantile_ratio_ci(
    baseline: npt.ArrayLike, candidate: npt.ArrayLike, q: float, *, level: float = 0.95
) -> tuple[float, float, float]:
    """Relative change of a quantile with a distribution-free interval, for large samples.

    Each arm gets an order-statistic interval for its quantile (the ranks come from the
    binomial distribution, no resampling, O(n)); the two are combined into an interval for
    ``candidate / baseline − 1`` at per-arm level ``sqrt(level)``, so the joint coverage is at
    least ``level`` (conservative: wider than a bootstrap's). Use it when n is large, where
    resampling millions of values a thousand times is not affordable.
    """
    b = _finite(baseline)
    c = _finite(candidate)
    if b.size == 0 or c.size == 0:
        return math.nan, math.nan, math.nan
    per_arm = math.sqrt(level)
    qb, lo_b, hi_b = _order_interval(b, q, per_arm)
    qc, lo_c, hi_c = _order_interval(c, q, per_arm)
    if qb <= 0 or lo_b <= 0:
        return math.nan, math.nan, math.nan
    return qc / qb - 1.0, lo_c / hi_b - 1.0, hi_c / lo_b - 1.0


def _finite(values: npt.ArrayLike) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    finite: np.ndarray = array[np.isfinite(array)]
    return finite


def _order_interval(x: np.ndarray, q: float, level: float) -> tuple[float, float, float]:
    lo_rank, hi_rank = order_ranks(x.size, q, level)
    point = float(np.quantile(x, q))
    lo, hi = np.partition(x, [lo_rank, hi_rank])[[lo_rank, hi_rank]]
    return point, float(min(lo, point)), float(max(hi, point))


def paired_difference_ci(
    point: float, a: npt.ArrayLike, b: npt.ArrayLike, *, level: float = 0.95
) -> tuple[float | None, float | None]:
    """A normal interval around ``point`` with the spread of mean(a − b) over pairs (a[i], b[i]).

    Used for excess divergence: the candidate's and the baseline_repeat's divergence of the same
    traces are paired; None when fewer than two pairs have both values.
    """
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    both = np.isfinite(x) & np.isfinite(y)
    d = x[both] - y[both]
    if d.size < 2:
        return None, None
    z = float(_scipy_stats.norm.ppf(0.5 + level / 2))
    spread = z * float(d.std(ddof=1)) / math.sqrt(d.size)
    return point - spread, point + spread
