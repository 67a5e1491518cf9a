"""The paired intervals of a slice larger than its sample: the m-out-of-n rescaling covers.

``analysis.analyze`` bootstraps a hash-chosen sample of m traces of a slice of n and scales
each replicate's deviation by √(m / n) around the exact change of all n (docs/architecture.md,
"Metric definitions"). On simulated paired traffic whose true change is known, the rescaled
interval with m a twentieth of n must cover about 95% of the time and be about as wide as the
interval of the whole run (unscaled, it would be √20 ≈ 4.5 times wider; scaled by m / n, far
narrower).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from analysis.paired import PairedBootstrap, quantile_interval

N = 20_000
CAP = 1_000
N_BOOT = 400
RUNS = 80
TRUE_CHANGE = 0.2  # the candidate's distribution is the baseline's times 1.2: every quantile
QUANTILES = {"latency_p50_ms": 0.5, "latency_p95_ms": 0.95}

FloatArray = npt.NDArray[np.float64]


def _traffic(rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
    """Paired latencies: a per-trace effect shared by both arms, per-call noise on each."""
    effect = rng.lognormal(6.0, 0.6, N)
    base = effect * rng.lognormal(0.0, 0.25, N)
    cand = effect * rng.lognormal(0.0, 0.25, N) * (1 + TRUE_CHANGE)
    return base, cand


def _intervals(
    base: FloatArray, cand: FloatArray, traces: npt.NDArray[np.int64], seed: int
) -> dict[str, tuple[float, float]]:
    """The analyzer's steps on the sampled ``traces``: replicates of log cand − log base,
    deviations scaled by √(m / n) around the exact change of all n."""
    ids = np.asarray([f"t{i:06d}" for i in traces], dtype=object)
    boot = PairedBootstrap(ids, n_boot=N_BOOT, seed=seed)
    reps = []
    for values in (base, cand):
        sample = {
            "trace": ids,
            "latency_ms": values[traces],
            "ttft_ms": np.full(traces.size, np.nan),
            "ok": np.ones(traces.size),
            "cost_usd": np.zeros(traces.size),
            "tokens": np.zeros(traces.size),
        }
        reps.append(boot.arm(sample))
    b, c = reps
    scale = math.sqrt(min(1.0, traces.size / base.size))
    out = {}
    for name, q in QUANTILES.items():
        point = math.log(float(np.quantile(cand, q)) / float(np.quantile(base, q)))
        center = math.log(c.center[name] / b.center[name])
        replicates = np.log(c.reps[name]) - np.log(b.reps[name])
        lo, hi = quantile_interval(point, center, replicates, scale, beyond=traces.size * (1 - q))
        assert lo is not None
        assert hi is not None
        out[name] = (math.expm1(lo), math.expm1(hi))
    return out


def test_a_sample_far_below_the_run_covers_with_the_width_of_the_whole_run() -> None:
    rng = np.random.default_rng(2024)
    covered = dict.fromkeys(QUANTILES, 0)
    widths: dict[str, list[float]] = {name: [] for name in QUANTILES}
    full_widths: dict[str, list[float]] = {name: [] for name in QUANTILES}
    for run in range(RUNS):
        base, cand = _traffic(rng)
        traces = np.sort(rng.choice(N, CAP, replace=False))
        for name, (lo, hi) in _intervals(base, cand, traces, seed=run).items():
            covered[name] += lo <= TRUE_CHANGE <= hi
            widths[name].append(hi - lo)
        if run < 3:  # the whole run's own interval (no sampling, scale 1), for the width
            for name, (lo, hi) in _intervals(base, cand, np.arange(N), seed=run).items():
                full_widths[name].append(hi - lo)
    for name in QUANTILES:
        coverage = covered[name] / RUNS
        assert 0.87 <= coverage <= 1.0, (name, coverage)
        ratio = float(np.mean(widths[name]) / np.mean(full_widths[name]))
        assert 0.7 <= ratio <= 1.45, (name, ratio)
