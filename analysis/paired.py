"""Paired intervals: every change of an arm against the reference, resampled by trace.

Every trace is sent to every arm, so the arms are not independent samples: a trace that is slow
on the baseline tends to be slow on the candidate. The intervals here keep that pairing: one
replicate gives each *trace* of a slice one Poisson(1) weight (the Poisson bootstrap), and the
same weight counts on every arm, so a replicate of the candidate's p99 and one of the
baseline's p99 come from the same resampled traces. A statistic of a replicate is the weighted
one: a weighted quantile (the smallest value whose cumulative weight reaches q of the total),
Σw·cost / Σw·ok, Σw·ok / Σw, a weighted mean.

The bootstrap runs on the slice's hash-chosen sample of at most
:data:`~analysis.aggregates.SAMPLE_TRACES` traces (every trace of a smaller slice). With m
sampled of n requests, each replicate's deviation from the sample's own statistic is scaled by
√(m / n) — the spread of a √n-consistent statistic (quantiles, ratios of means) shrinks as
1/√n — and laid around the exact figure of all n requests. Below the sample size the scale is
1 and this is the plain percentile bootstrap; just above it the scale is still about 1, so the
width does not jump where the sampling starts (a test crosses it). Relative changes are
resampled on the log scale (log candidate − log reference), the ok rate's change in points.

A quantile's change blends two intervals by how many requests lie beyond the quantile in the
sample, ``t = m (1 − q)`` (:func:`quantile_interval`). A resampled order statistic jumps
between neighbouring values, so the replicates of a difference of two quantiles have lumpy,
heavy tails: once several requests lie beyond the quantile, their 2.5% and 97.5% points cover
far more than 95% (97–100% at p95/p99 in ``bench/gate_power.py``), while their interquartile
range is not moved by the lumps — IQR / 1.349 is then the standard error, and the interval the
point ± 1.96 of it. With one or two requests beyond (a p99 of 150) the replicates take a
handful of values, the IQR understates the spread, and the percentile interval is the one that
covers. The interval is the percentile one up to ``t`` = :data:`TAIL_PERCENTILE` (1.5), the
IQR one from :data:`TAIL_IQR` (3), each end blended linearly in between, so the width never
jumps with n. Coverage per cell is measured in the benchmark (figures in README's analyzer
section).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy import stats as _scipy_stats

__all__ = [
    "QUANTILE_FIGURES",
    "TAIL_IQR",
    "TAIL_PERCENTILE",
    "ArmReplicates",
    "PairedBootstrap",
    "log_ratio_interval",
    "poisson_weights",
    "quantile_interval",
    "scaled_interval",
]

FloatArray = npt.NDArray[np.float64]

QUANTILE_FIGURES: Final = {
    f"{column.removesuffix('_ms')}_p{round(q * 100)}_ms": (column, q)
    for column in ("latency_ms", "ttft_ms")
    for q in (0.50, 0.95, 0.99)
}
"""Quantile figure -> (the request column, q)."""
_TAIL: Final = 0.025
_Z: Final = float(_scipy_stats.norm.ppf(1 - _TAIL))
_IQR_PER_SD: Final = float(_scipy_stats.norm.ppf(0.75) - _scipy_stats.norm.ppf(0.25))
TAIL_PERCENTILE: Final = 1.5
"""Up to this many sampled requests beyond a quantile, its change has the percentile interval."""
TAIL_IQR: Final = 3.0
"""From this many sampled requests beyond a quantile, its change has the IQR-based interval."""


@dataclass(frozen=True, kw_only=True)
class ArmReplicates:
    """One arm's statistics: on its sample (``center``) and per replicate (``reps``)."""

    size: int
    """Requests of the arm in the sample."""
    center: dict[str, float] = field(default_factory=dict)
    reps: dict[str, FloatArray] = field(default_factory=dict)


def poisson_weights(n_boot: int, size: int, seed: int) -> npt.NDArray[np.uint8]:
    """A ``(size, n_boot)`` matrix of Poisson(1) weights, a row per trace and a column per
    replicate (small integers, stored as bytes; a trace's row is contiguous)."""
    if n_boot < 1:
        raise ValueError(f"n_boot is {n_boot}; it must be >= 1")
    rng = np.random.default_rng(seed)
    weights: npt.NDArray[np.uint8] = np.minimum(rng.poisson(1.0, size=(size, n_boot)), 255).astype(
        np.uint8
    )
    return weights


class PairedBootstrap:
    """Poisson(1) weights per (replicate, trace) of one slice's sample, shared by its arms.

    ``weights`` (from :func:`poisson_weights`, at least as many columns as traces) may be
    shared by slices: each slice's intervals only need its own traces' weights independent.
    """

    def __init__(
        self,
        traces: npt.ArrayLike,
        *,
        n_boot: int,
        seed: int,
        weights: npt.NDArray[np.uint8] | None = None,
    ) -> None:
        self.traces = _sorted_unique(np.asarray(traces, dtype=object))
        if weights is None or weights.shape[0] < self.traces.size:
            weights = poisson_weights(n_boot, self.traces.size, seed)
        self.weights = weights[: self.traces.size]

    def arm(self, sample: Mapping[str, np.ndarray]) -> ArmReplicates:
        """The statistics of one arm's sample (``trace`` ids and the request columns of
        :func:`analysis.aggregates.group_figures`' sample)."""
        trace = np.asarray(sample.get("trace", np.array([], dtype=object)), dtype=object)
        if trace.size == 0:
            return ArmReplicates(size=0)
        same = trace.size == self.traces.size and bool(np.all(trace == self.traces))
        index = np.arange(trace.size) if same else np.searchsorted(self.traces, trace)
        center: dict[str, float] = {}
        reps: dict[str, FloatArray] = {}
        for column in ("latency_ms", "ttft_ms"):
            values = np.asarray(sample[column], dtype=float)
            keep = np.flatnonzero(np.isfinite(values))
            if not keep.size:
                continue
            order = keep[np.argsort(values[keep], kind="stable")]
            sorted_values = values[order]
            wanted = {n: q for n, (col, q) in QUANTILE_FIGURES.items() if col == column}
            found = _weighted_quantiles(sorted_values, self.weights[index[order]], wanted)
            for name, q in wanted.items():
                center[name] = float(sorted_values[_rank(sorted_values.size, q)])
                reps[name] = found[name]
        columns = {
            "ok": np.asarray(sample["ok"], dtype=np.float32),
            "cost": np.asarray(sample["cost_usd"], dtype=np.float32),
            "tokens": np.nan_to_num(np.asarray(sample["tokens"], dtype=np.float32)),
        }
        ones = np.ones((trace.size, 1), dtype=np.float32)
        center.update({k: float(v[0]) for k, v in _sums(ones, columns).items()})
        reps.update(_sums(self.weights[index].astype(np.float32), columns))
        return ArmReplicates(size=int(trace.size), center=center, reps=reps)


def _sorted_unique(traces: np.ndarray) -> np.ndarray:
    """The distinct ``traces`` in order (``traces`` itself when already strictly increasing,
    as the traces of one arm's sample are)."""
    if traces.size < 2 or bool(np.all(traces[1:] > traces[:-1])):
        return traces
    return np.unique(traces)


def _rank(size: int, q: float) -> int:
    """The 0-based rank of the q quantile of ``size`` unit weights (as :func:`_weighted_quantile`
    picks it)."""
    return min(max(math.ceil(q * size) - 1, 0), size - 1)


def _sums(weights: np.ndarray, columns: Mapping[str, np.ndarray]) -> dict[str, FloatArray]:
    """Per column (replicate) of ``weights`` (a row per request): ok rate, cost per success and
    per request, tokens per request."""
    total = weights.sum(axis=0, dtype=np.float64)
    ok = (columns["ok"] @ weights).astype(np.float64)
    cost = (columns["cost"] @ weights).astype(np.float64)
    tokens = (columns["tokens"] @ weights).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "ok_rate": ok / total,
            "cost_per_success_usd": cost / ok,
            "cost_per_request_usd": cost / total,
            "tokens_per_request": tokens / total,
        }


def _weighted_quantiles(
    sorted_values: FloatArray, weights: npt.NDArray[np.uint8], wanted: Mapping[str, float]
) -> dict[str, FloatArray]:
    """Per name of ``wanted`` (name -> q) and per column (replicate) of ``weights`` (a row of
    integer weights per sorted value): the smallest value whose cumulative weight reaches q of
    the column's total (a resample's inverted empirical distribution); NaN for a column of
    zero weight.

    The rank of that value is the count of rows whose cumulative weight is below the target.
    Running sums of Poisson(1) weights stay within a few √m of their expectation, so the
    count is taken in a band of rows around q·m (rows above it all below, rows past it none,
    checked per column); a column whose rank falls outside its band is counted over every row.
    """
    totals = weights.sum(axis=0, dtype=np.uint32)
    # The narrowest type that holds every running sum (exact: integer sums).
    kind = np.uint16 if int(totals.max(initial=0)) <= np.iinfo(np.uint16).max else np.uint32
    size = sorted_values.size
    half = 8 * math.isqrt(size) + 16
    bands: dict[str, tuple[int, int]] = {}
    for name, q in wanted.items():
        start = min(max(_rank(size, q) - half, 0), size)
        bands[name] = (start, min(start + 2 * half, size))
    # The weight of the rows above each band (running sums are only taken inside the bands).
    before: dict[int, np.ndarray] = {}
    running, done = np.zeros(totals.size, dtype=np.uint32), 0
    for start in sorted({start for start, _ in bands.values()}):
        running = running + weights[done:start].sum(axis=0, dtype=np.uint32)
        before[start], done = running, start
    out: dict[str, FloatArray] = {}
    for name, q in wanted.items():
        targets = np.maximum(np.ceil(q * totals.astype(np.float64)), 1).astype(kind)
        start, stop = bands[name]
        above = before[start]
        band: npt.NDArray[np.unsignedinteger[Any]] = weights[start:stop].astype(kind)
        np.cumsum(band, axis=0, out=band)  # in place: twice as fast
        np.add(band, above.astype(kind), out=band)  # band[i]: cumulative weight to row start + i
        ranks = start + (band < targets).sum(axis=0)
        # Exact where every row above the band is below the target and the band's last row
        # reaches it (or the band ends the rows); elsewhere counted over every row.
        inside = np.ones(totals.size, dtype=bool)
        if start > 0:
            inside &= above < targets
        if stop < size:
            inside &= band[-1] >= targets
        if not inside.all():
            outside = np.flatnonzero(~inside)
            cumulative = np.cumsum(weights[:, outside], axis=0, dtype=kind)
            ranks[outside] = (cumulative < targets[outside]).sum(axis=0)
        picked: FloatArray = sorted_values[np.minimum(ranks, size - 1)]
        picked[totals <= 0] = np.nan
        out[name] = picked
    return out


def scaled_interval(
    point: float, center: float, reps: FloatArray, scale: float
) -> tuple[float | None, float | None]:
    """``point`` ± the replicates' 2.5% and 97.5% deviations from ``center``, times ``scale``
    (√(sampled / all); 1 when every request is in the sample). None without replicates."""
    finite = reps[np.isfinite(reps)]
    if finite.size < 2 or not math.isfinite(center) or not math.isfinite(point):
        return None, None
    lo, hi = np.quantile(finite - center, [_TAIL, 1 - _TAIL])
    return point + float(lo) * scale, point + float(hi) * scale


def quantile_interval(
    point: float, center: float, reps: FloatArray, scale: float, *, beyond: float
) -> tuple[float | None, float | None]:
    """The interval of a quantile's change, ``beyond`` = sampled requests beyond the quantile
    (``m (1 − q)``, m the smaller arm's sample): the percentile interval
    (:func:`scaled_interval`) up to :data:`TAIL_PERCENTILE`, ``point`` ± 1.96 × the
    replicates' IQR / 1.349 × ``scale`` from :data:`TAIL_IQR`, each end blended linearly
    between (module docstring). Replicates with no interquartile spread keep the percentile
    interval. None without replicates."""
    lo, hi = scaled_interval(point, center, reps, scale)
    if lo is None or hi is None:
        return None, None
    weight = min(max((beyond - TAIL_PERCENTILE) / (TAIL_IQR - TAIL_PERCENTILE), 0.0), 1.0)
    finite = reps[np.isfinite(reps)]
    q1, q3 = np.quantile(finite, [0.25, 0.75])
    if weight == 0.0 or not q3 > q1:
        return lo, hi
    spread = _Z * float(q3 - q1) / _IQR_PER_SD * scale
    return (
        (1 - weight) * lo + weight * (point - spread),
        (1 - weight) * hi + weight * (point + spread),
    )


def log_ratio_interval(
    n: int, mean: float | None, var: float | None, *, level: float = 0.95
) -> tuple[float | None, float | None, float | None]:
    """``(change, lo, hi)`` of a geometric-mean ratio from per-trace log ratios: exp(mean) − 1
    with Student's t-interval on the mean log ratio (n − 1 degrees of freedom)."""
    if n < 1 or mean is None:
        return None, None, None
    change = math.expm1(mean)
    if n < 2 or var is None or not math.isfinite(var):
        return change, None, None
    spread = float(_scipy_stats.t.ppf(0.5 + level / 2, n - 1)) * math.sqrt(max(var, 0.0) / n)
    return change, math.expm1(mean - spread), math.expm1(mean + spread)
