"""analyze's figures beyond the summary, each recomputed independently with numpy on generated
results: per-chunk ITL, schedule lag, goodput, error classes, tests with BH, too-small slices,
model pins, divergence flags, replay fidelity, and the large-sample interval paths."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats as scipy_stats

from analysis.analyze import analyze
from analysis.run import Run, open_run
from analysis.stats import cost_per_success_ratio_delta, quantile_ratio_ci
from shadow.config import AnalysisConfig
from shadow.results.rows import ResultRow, TraceRow
from shadow.results.store import ResultsStore

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron".split()


def _store(path: Path, rows: list[ResultRow], traces: list[TraceRow] = ()) -> Run:  # type: ignore[assignment]
    with ResultsStore.open(path) as store:
        store.start_run("r", source="test", config={}, arms=["baseline", "candidate"])
        store.write(rows, traces)
        store.finish_run("r", status="done", counts={})
    return open_run(path)


def _row(trace: str, arm: str, **fields: object) -> ResultRow:
    values: dict[str, object] = {
        "run_id": "r", "trace_id": trace, "arm": arm, "scheduled_at": 100.0, "sent_at": 100.0,
        "latency_ms": 100.0, "status": 200, "ok": True, "model": "m", "prompt_tokens": 10,
        "completion_tokens": 10, "cost_usd": 0.001,
    }  # fmt: skip
    values.update(fields)
    return ResultRow(**values)  # type: ignore[arg-type]


@pytest.fixture
def rich_run(tmp_path: Path) -> Iterator[tuple[Run, dict[str, np.ndarray]]]:
    """Two intents; the candidate is slower and wordier on 'hard', with streamed chunks."""
    rng = np.random.default_rng(3)
    rows: list[ResultRow] = []
    truth: dict[str, list[float]] = {}
    for intent, slow, words in (("easy", 1.0, 1), ("hard", 1.5, 3)):
        for i in range(300):
            trace = f"{intent}-{i}"
            for arm, factor, tokens_factor in (
                ("baseline", 1.0, 1), ("candidate", slow, words), ("baseline_repeat", 1.0, 1),
            ):  # fmt: skip
                gaps = rng.exponential(20.0 * factor, size=int(rng.integers(2, 8)))
                offsets = [float(x) for x in np.cumsum(gaps) + 50.0]
                lag = float(rng.exponential(2.0))
                latency = offsets[-1] + 5.0
                tokens = int(rng.integers(5, 30)) * tokens_factor
                error = "timeout" if i % 50 == 0 and arm == "candidate" else None
                status = 503 if i % 60 == 1 and arm == "candidate" else 200
                invalid = i % 70 == 2 and arm == "candidate"
                ok = error is None and status == 200 and not invalid
                rows.append(
                    _row(
                        trace,
                        arm,
                        slices={"intent": intent},
                        scheduled_at=100.0 + i,
                        sent_at=100.0 + i + lag / 1000,
                        ttft_ms=offsets[0],
                        latency_ms=latency,
                        completion_tokens=tokens,
                        chunk_offsets_ms=offsets,
                        error=error,
                        status=None if error else status,
                        ok=ok,
                        model="m-small" if arm == "candidate" and i % 3 == 0 else "m",
                        output_text=" ".join(WORDS[(i + j) % len(WORDS)] for j in range(6))
                        if arm != "candidate" or intent == "easy"
                        else "completely different words here about nothing",
                    )
                )
                key = f"{intent}/{arm}"
                truth.setdefault(f"{key}/gaps", []).extend(np.diff(offsets))
                truth.setdefault(f"{key}/lag", []).append(lag)
                truth.setdefault(f"{key}/ttft", []).append(offsets[0])
                truth.setdefault(f"{key}/tpot", []).append(
                    (latency - offsets[0]) / (tokens - 1) if tokens > 1 else np.nan
                )
                truth.setdefault(f"{key}/ok", []).append(ok)
    run = _store(tmp_path / "run.duckdb", rows)
    yield run, {k: np.asarray(v, dtype=float) for k, v in truth.items()}
    run.close()


def _group(report: dict[str, Any], intent: str, arm: str) -> dict[str, Any]:
    groups = report["groups"]
    assert isinstance(groups, list)
    return next(g for g in groups if g["slice"] == {"intent": intent} and g["arm"] == arm)


def test_itl_lag_goodput_and_error_classes_match_numpy(
    rich_run: tuple[Run, dict[str, np.ndarray]],
) -> None:
    """Per-chunk ITL, schedule lag, goodput and error counts equal an independent computation."""
    run, truth = rich_run
    settings = AnalysisConfig(slo_ttft_ms=60.0, slo_tpot_ms=40.0)
    report = analyze(run, ["intent"], settings=settings).to_json()
    for intent in ("easy", "hard"):
        for arm in ("baseline", "candidate"):
            g = _group(report, intent, arm)
            key = f"{intent}/{arm}"
            assert g["itl_p50_ms"] == pytest.approx(np.percentile(truth[f"{key}/gaps"], 50))
            assert g["itl_p95_ms"] == pytest.approx(np.percentile(truth[f"{key}/gaps"], 95))
            assert g["schedule_lag_p99_ms"] == pytest.approx(
                np.percentile(truth[f"{key}/lag"], 99), rel=1e-6
            )
            tpot = np.nan_to_num(truth[f"{key}/tpot"], nan=0.0)
            good = (truth[f"{key}/ok"] > 0) & (truth[f"{key}/ttft"] <= 60.0) & (tpot <= 40.0)
            assert g["goodput"] == pytest.approx(good.mean())
    cand = _group(report, "easy", "candidate")
    assert cand["errors"] == {"timeout": 6, "http_503": 5, "invalid": 5}
    assert _group(report, "easy", "baseline")["errors"] == {}
    assert cand["models"] == {"m": 200, "m-small": 100}


def test_tests_detect_the_slow_wordy_slice_and_bh_adjusts(
    rich_run: tuple[Run, dict[str, np.ndarray]],
) -> None:
    """Mann-Whitney and KS reject on 'hard' (slower, 3x tokens); q-values are BH-adjusted p's."""
    run, _ = rich_run
    report = analyze(run, ["intent"]).to_json()
    hard = _group(report, "hard", "candidate")["tests"]
    easy = _group(report, "easy", "candidate")["tests"]
    assert hard["latency_mann_whitney"]["p"] < 1e-6
    assert hard["completion_tokens_ks"]["p"] < 1e-6
    assert easy["completion_tokens_ks"]["p"] > 0.001
    assert easy["ok_fisher"]["p"] < 0.01  # the candidate fails 16 of 300, the baseline none
    for tests in (hard, easy):
        for values in tests.values():
            assert values["q"] >= values["p"]


def test_divergent_slice_is_flagged_and_noise_alone_is_not(
    rich_run: tuple[Run, dict[str, np.ndarray]],
) -> None:
    """'hard' answers differ from the baseline beyond the noise floor; 'easy' ones do not."""
    run, _ = rich_run
    report = analyze(run, ["intent"]).to_json()
    hard = _group(report, "hard", "candidate")
    easy = _group(report, "easy", "candidate")
    assert hard["divergence_flagged"] is True
    assert hard["excess_divergence_lo"] <= hard["excess_divergence"] <= hard["excess_divergence_hi"]
    assert easy["divergence_flagged"] is False
    assert [f["slice"] for f in report["flagged"]] == [{"intent": "hard"}]


def test_small_slices_are_marked_and_pins_raise_alarms(
    rich_run: tuple[Run, dict[str, np.ndarray]],
) -> None:
    """min_samples above the slice size marks it too small; a pinned model mismatch alarms."""
    run, _ = rich_run
    settings = AnalysisConfig(min_samples=301, pin_models={"candidate": "m", "baseline": "m"})
    report = analyze(run, ["intent"], settings=settings).to_json()
    assert all(g["too_small"] for g in report["groups"])
    assert _group(report, "hard", "candidate")["divergence_flagged"] is None
    assert report["alarms"] == [
        "candidate: 200 of 600 responses report model 'm-small' (200), not the pinned 'm'"
    ]
    assert _group(report, "easy", "candidate")["model_mismatches"] == 100


def _fidelity_run(path: Path, factor: float) -> Run:
    rng = np.random.default_rng(5)
    rows, traces = [], []
    for i in range(400):
        production = float(rng.lognormal(5.0, 0.3))
        replayed = float(rng.lognormal(5.0, 0.3)) * factor
        traces.append(
            TraceRow(
                run_id="r",
                trace_id=f"t{i}",
                captured_at=0,
                service="s",
                method="POST",
                path="/v1/chat/completions",
                production_status=200,
                production_latency_ms=production,
            )
        )
        rows.append(_row(f"t{i}", "baseline", latency_ms=replayed))
        rows.append(_row(f"t{i}", "candidate", latency_ms=replayed))
    return _store(path, rows, traces)


def test_replay_fidelity_compares_the_replayed_baseline_with_production(tmp_path: Path) -> None:
    """A faithful replay passes; a baseline three times slower than production raises an alarm."""
    faithful = _fidelity_run(tmp_path / "a.duckdb", 1.0)
    report = analyze(faithful, []).to_json()
    fid = report["fidelity"]
    assert fid["n"] == 400
    assert fid["faithful"] is True
    assert fid["status_agreement"] == 1.0
    change = fid["latency_p50_change"]
    assert change["lo"] < 0 < change["hi"]
    assert report["alarms"] == []
    slow = analyze(_fidelity_run(tmp_path / "b.duckdb", 3.0), []).to_json()
    assert slow["fidelity"]["faithful"] is False
    assert slow["fidelity"]["latency_p50_change"]["lo"] > 1.0
    assert slow["alarms"]
    assert slow["alarms"][0].startswith("replay fidelity")


def test_paired_intervals_are_narrower_than_unpaired_and_cover(tmp_path: Path) -> None:
    """Traces share a per-trace effect on both arms: the paired interval of each quantile's
    change contains the true +20% and is narrower than the unpaired order-statistic one."""
    rng = np.random.default_rng(11)
    n = 3_000
    effect = rng.lognormal(6.0, 0.6, n)
    base = effect * rng.lognormal(0.0, 0.25, n)
    cand = effect * rng.lognormal(0.0, 0.25, n) * 1.2
    rows = [_row(f"t{i}", "baseline", latency_ms=float(base[i])) for i in range(n)]
    rows += [_row(f"t{i}", "candidate", latency_ms=float(cand[i])) for i in range(n)]
    report = analyze(_store(tmp_path / "big.duckdb", rows), []).to_json()
    delta = _group_arm(report, "candidate")["delta"]
    for figure, q in (("latency_p50_ms", 0.5), ("latency_p95_ms", 0.95)):
        got = delta[figure]
        point, lo, hi = quantile_ratio_ci(base, cand, q)
        assert got["change"] == pytest.approx(point)
        assert got["lo"] < 0.2 < got["hi"]
        assert got["hi"] - got["lo"] < 0.8 * (hi - lo)
    ratio = delta["latency_ratio"]
    logs = np.log(cand / base)
    assert ratio["change"] == pytest.approx(np.expm1(logs.mean()))
    spread = scipy_stats.t.ppf(0.975, n - 1) * logs.std(ddof=1) / np.sqrt(n)
    assert ratio["lo"] == pytest.approx(np.expm1(logs.mean() - spread))
    assert ratio["hi"] == pytest.approx(np.expm1(logs.mean() + spread))
    assert ratio["lo"] < 0.2 < ratio["hi"]


def _group_arm(report: dict[str, Any], arm: str) -> dict[str, Any]:
    groups = report["groups"]
    assert isinstance(groups, list)
    return next(g for g in groups if g["arm"] == arm)


def test_delta_method_cost_interval_covers_at_the_nominal_rate() -> None:
    """Over 300 simulated runs the delta-method interval of cost per success covers the true
    relative change about 95% of the time."""
    rng = np.random.default_rng(0)
    true_change = (0.8 * 1.1 / 0.9) / (1.0 / 0.95) - 1
    hits = 0
    for _ in range(300):
        sums = []
        for scale, p_ok in ((1.0, 0.95), (0.8 * 1.1, 0.9)):
            cost = rng.lognormal(0.0, 0.8, 3_000) * scale / np.exp(0.32)
            ok = rng.random(3_000) < p_ok
            sums.append((3_000, cost.sum(), (cost**2).sum(), cost[ok].sum(), int(ok.sum())))
        _, lo, hi = cost_per_success_ratio_delta(sums[0], sums[1])
        hits += lo <= true_change <= hi
    assert 0.91 <= hits / 300 <= 0.98


def test_ks_matches_scipy() -> None:
    """The token-distribution test is scipy's two-sample KS."""
    from analysis.stats import ks_two_sample

    a, b = np.arange(50.0), np.arange(50.0) + 10
    assert ks_two_sample(a, b) == pytest.approx(scipy_stats.ks_2samp(a, b).pvalue)
