"""Per-request figures and paired intervals: a failing candidate does not look faster, skipped
requests are counted apart, and the paired interval's width does not jump where sampling
starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analysis.aggregates import SAMPLE_TRACES
from analysis.analyze import analyze
from analysis.paired import (
    TAIL_IQR,
    TAIL_PERCENTILE,
    PairedBootstrap,
    quantile_interval,
    scaled_interval,
)
from analysis.run import Run, open_run
from shadow.results.rows import ResultRow
from shadow.results.store import ResultsStore


def _store(path: Path, rows: list[ResultRow]) -> Run:
    with ResultsStore.open(path) as store:
        store.start_run("r", source="test", config={}, arms=["baseline", "candidate"])
        store.write(rows)
        store.finish_run("r", status="done", counts={})
    return open_run(path)


def _row(trace: str, arm: str, **fields: Any) -> ResultRow:
    values: dict[str, Any] = {
        "run_id": "r", "trace_id": trace, "arm": arm, "scheduled_at": 100.0, "sent_at": 100.0,
        "latency_ms": 100.0, "status": 200, "ok": True, "model": "m", "prompt_tokens": 10,
        "completion_tokens": 10, "cost_usd": 0.001,
    }  # fmt: skip
    values.update(fields)
    return ResultRow(**values)


def _candidate(report: dict[str, Any]) -> dict[str, Any]:
    return next(g for g in report["groups"] if g["arm"] == "candidate")


def test_instant_failures_retried_do_not_make_a_candidate_look_faster(tmp_path: Path) -> None:
    """20% of the candidate's calls fail in 5 ms and succeed on retry with the baseline's own
    latency: per request it is (slightly) slower, never faster; per attempt it looks faster."""
    rng = np.random.default_rng(4)
    n = 1_000
    latency = rng.lognormal(6.0, 0.5, n)
    rows: list[ResultRow] = []
    for i in range(n):
        rows.append(_row(f"t{i}", "baseline", latency_ms=float(latency[i])))
        if i % 5 == 0:
            rows.append(_row(f"t{i}", "candidate", latency_ms=5.0, status=500, ok=False,
                             completion_tokens=0))  # fmt: skip
            rows.append(_row(f"t{i}", "candidate", attempt=1, latency_ms=float(latency[i])))
        else:
            rows.append(_row(f"t{i}", "candidate", latency_ms=float(latency[i])))
    run = _store(tmp_path / "run.duckdb", rows)
    cand = _candidate(analyze(run, []).to_json())
    assert cand["n"] == n
    assert cand["ok_rate"] == 1.0
    assert cand["attempt_ok_rate"] == pytest.approx(n / (n * 1.2))
    assert cand["attempts_per_request"] == pytest.approx(1.2)
    for q in (50, 95, 99):
        assert cand["delta"][f"latency_p{q}_ms"]["change"] >= 0.0
        assert cand["delta"][f"latency_p{q}_ms"]["hi"] > 0.0
    assert cand["latency_ratio"] >= 1.0
    assert cand["delta"]["latency_ratio"]["lo"] > 0.0  # 5 ms more on a fifth of the traces
    # what the per-attempt figures (the old definition) would have shown: a faster candidate
    assert cand["attempt_latency_p50_ms"] < 0.9 * cand["latency_p50_ms"]
    assert cand["delta"]["cost_per_success_usd"]["change"] == pytest.approx(0.2)
    assert cand["delta"]["tokens_per_request"]["change"] == pytest.approx(0.2 * 10 / 20)


def test_skipped_requests_are_counted_apart(tmp_path: Path) -> None:
    """Requests the breaker or budget skipped count as skipped, not in n, ok rate or latency."""
    rows: list[ResultRow] = []
    for i in range(100):
        rows.append(_row(f"t{i}", "baseline"))
        if i < 10:
            error = "skipped_breaker" if i < 6 else "skipped_budget"
            rows.append(_row(f"t{i}", "candidate", error=error, ok=False, status=None,
                             latency_ms=None, sent_at=None, cost_usd=None, prompt_tokens=None,
                             completion_tokens=None))  # fmt: skip
        else:
            rows.append(_row(f"t{i}", "candidate", ok=i % 10 != 5, latency_ms=200.0))
    cand = _candidate(analyze(_store(tmp_path / "run.duckdb", rows), []).to_json())
    assert (cand["n"], cand["skipped"]) == (90, 10)
    assert cand["ok_rate"] == pytest.approx(81 / 90)
    assert cand["latency_p50_ms"] == 200.0
    assert cand["attempts_per_request"] == 1.0


def _paired_rows(n: int, seed: int = 8) -> list[ResultRow]:
    rng = np.random.default_rng(seed)
    effect = rng.lognormal(6.0, 0.6, n)
    base = effect * rng.lognormal(0.0, 0.25, n)
    cand = effect * rng.lognormal(0.0, 0.25, n) * 1.1
    cost = rng.lognormal(-7.0, 0.5, n)
    rows = []
    for i in range(n):
        rows.append(_row(f"t{i:05d}", "baseline", latency_ms=float(base[i]),
                         cost_usd=float(cost[i]), ok=i % 30 != 1))  # fmt: skip
        rows.append(_row(f"t{i:05d}", "candidate", latency_ms=float(cand[i]),
                         cost_usd=float(cost[i]) * 1.1, ok=i % 25 != 2))  # fmt: skip
    return rows


def test_the_interval_width_does_not_jump_where_sampling_starts(tmp_path: Path) -> None:
    """Just below SAMPLE_TRACES every trace is resampled; just above, a sample of them with the
    spread scaled by √(sampled / all): widths (each the mean over four bootstrap seeds, whose
    own noise is about 7%) differ by well under 15%."""
    rows = _paired_rows(SAMPLE_TRACES + 100)
    below = [r for r in rows if int(r.trace_id[1:]) < SAMPLE_TRACES - 100]
    figures = ("latency_p50_ms", "latency_p99_ms", "cost_per_success_usd")
    widths = []
    for name, subset in (("below", below), ("above", rows)):
        run = _store(tmp_path / f"{name}.duckdb", subset)
        total = dict.fromkeys(figures, 0.0)
        for seed in range(4):
            delta = _candidate(analyze(run, [], seed=seed).to_json())["delta"]
            for figure in figures:
                total[figure] += (delta[figure]["hi"] - delta[figure]["lo"]) / 4
        run.close()
        widths.append(total)
    for figure, width in widths[0].items():
        assert widths[1][figure] == pytest.approx(width, rel=0.15), figure


def test_the_bootstrap_weights_are_shared_by_the_arms_of_a_slice() -> None:
    """One trace has one weight per replicate on every arm (the pairing), whatever order or
    subset of the slice's traces an arm has."""
    boot = PairedBootstrap(np.array(["c", "a", "b"], dtype=object), n_boot=50, seed=1)
    sample = {
        "trace": np.array(["a", "c"], dtype=object),
        "latency_ms": np.array([1.0, 2.0]), "ttft_ms": np.array([np.nan, np.nan]),
        "ok": np.array([1.0, 1.0]), "cost_usd": np.array([1.0, 3.0]),
        "tokens": np.array([1.0, 1.0]), "completion_tokens": np.array([1.0, 1.0]),
    }  # fmt: skip
    reps = boot.arm(sample)
    w = boot.weights.astype(float).T  # a row per replicate, a column per trace (a, b, c)
    used = w[:, 0] + w[:, 2] > 0
    expected = (w[used, 0] * 1.0 + w[used, 2] * 3.0) / (w[used, 0] + w[used, 2])
    np.testing.assert_allclose(reps.reps["cost_per_request_usd"][used], expected, rtol=1e-6)
    assert reps.center["cost_per_success_usd"] == pytest.approx(2.0)


def test_a_quantiles_interval_blends_from_percentile_to_iqr_without_a_jump() -> None:
    """Up to 1.5 sampled requests beyond the quantile: the replicates' 2.5/97.5% deviations;
    from 5: the point ± 1.96 × IQR / 1.349; continuous in between (so in n)."""
    rng = np.random.default_rng(3)
    # lumpy, heavy-tailed replicates, as a resampled order statistic gives
    reps = np.concatenate([rng.normal(0.0, 0.05, 900), rng.normal(0.0, 0.4, 100)])
    point, center, scale = 0.1, 0.01, 0.8
    pct = scaled_interval(point, center, reps, scale)
    assert pct[0] is not None
    assert pct[1] is not None
    assert quantile_interval(point, center, reps, scale, beyond=TAIL_PERCENTILE) == pct
    assert quantile_interval(point, center, reps, scale, beyond=0.5) == pct
    q1, q3 = np.quantile(reps, [0.25, 0.75])
    half = 1.959964 * (q3 - q1) / 1.34898 * scale
    lo, hi = quantile_interval(point, center, reps, scale, beyond=TAIL_IQR)
    assert lo is not None
    assert hi is not None
    assert (lo, hi) == pytest.approx((point - half, point + half), rel=1e-4)
    assert hi - lo < pct[1] - pct[0]  # the lumpy tails no longer widen it
    widths = []
    for beyond in np.linspace(1.0, 6.0, 51):
        a, b = quantile_interval(point, center, reps, scale, beyond=float(beyond))
        assert a is not None
        assert b is not None
        widths.append(b - a)
    steps = np.abs(np.diff(widths))
    assert steps.max() < 0.05 * max(widths)  # no jump anywhere along the way
    flat = np.full(10, 0.2)  # no spread at all: still the percentile interval (of width 0)
    assert quantile_interval(point, 0.2, flat, scale, beyond=10) == pytest.approx((point, point))
