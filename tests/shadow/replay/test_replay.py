"""The replayer end to end: real mock-llm targets, real results stores, the real CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest

from shadow.config import ArmConfig
from shadow.replay.breaker import CircuitBreaker
from shadow.replay.pacing import recorded_schedule
from shadow.replay.pricing import DEFAULT_PRICES, PricingTable
from shadow.replay.replayer import Replayer
from shadow.replay.scheduler import FanOut
from shadow.replay.sources import SourceItem
from shadow.replay.targets import HttpTarget, build_request
from shadow.results.store import ResultsStore
from shadow.results.writer import AsyncResultsWriter
from shadow.sim import FaultConfig, MockLLMServer
from shadow.trace.azure import import_azure
from shadow.trace.jsonl import write_jsonl
from shadow.trace.record import HttpRequest, TraceRecord


@pytest.fixture(scope="module")
def window(azure_csv: Path) -> list[TraceRecord]:
    """Twenty seconds of the public Azure trace as TraceRecords."""
    records = import_azure(azure_csv, seed=1, window_start=600.0, window_seconds=20.0)  # busy
    assert len(records) > 30
    return records


def query(folder: Path, sql: str) -> tuple[object, ...] | None:
    """One row of a query on the run's DuckDB file (opened read-only after the run)."""
    with duckdb.connect(str(folder / "run.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchone()


def items(records: list[TraceRecord]) -> list[SourceItem]:
    return [SourceItem(record=r, position=None) for r in records]


async def replay(
    records: list[TraceRecord],
    store: ResultsStore,
    *,
    baseline: str,
    candidate: str,
    speed: float = 20.0,
    run_id: str = "test-run",
    **kwargs: object,
) -> Replayer:
    targets = {
        "baseline": HttpTarget("baseline", ArmConfig(url=baseline, timeout_s=10)),
        "candidate": HttpTarget("candidate", ArmConfig(url=candidate, timeout_s=10)),
    }
    writer = AsyncResultsWriter(store, batch_rows=50)
    store.start_run(run_id, source="test", config={}, arms=list(targets))
    fanout = FanOut(
        run_id=run_id,
        targets=targets,
        writer=writer,
        pricing=PricingTable(DEFAULT_PRICES),
        **kwargs,  # type: ignore[arg-type]
    )
    replayer = Replayer(
        fanout,
        items=items(records),
        offsets=list(recorded_schedule([r.captured_at for r in records], speed=speed)),
    )
    try:
        await replayer.run()
    finally:
        await writer.aclose()
        for target in targets.values():
            await target.aclose()
    return replayer


async def test_replays_a_trace_window_with_one_result_per_trace_per_arm(
    window: list[TraceRecord], mock_large: MockLLMServer, mock_routed: MockLLMServer, tmp_path: Path
) -> None:
    """Every record reaches both arms once, due times keep the recorded gaps / speed."""
    store = ResultsStore.open(tmp_path / "run.duckdb")
    replayer = await replay(window, store, baseline=mock_large.url, candidate=mock_routed.url)
    store.close()
    con = duckdb.connect(str(tmp_path / "run.duckdb"), read_only=True)
    counts = dict(con.execute("select arm, count(*) from results group by arm").fetchall())
    assert counts == {"baseline": len(window), "candidate": len(window)}
    due = con.execute(
        "select r.scheduled_at, t.captured_at from results r join traces t using (run_id, trace_id)"
        " where arm = 'baseline' order by t.captured_at"
    ).fetchall()
    scheduled = np.array([d[0] for d in due])
    captured = np.array([d[1] for d in due], dtype=np.int64)
    expected_gaps = np.diff(captured) / 1e9 / 20.0
    assert np.abs(np.diff(scheduled) - expected_gaps).max() < 0.002  # 2 ms: two clock reads
    models = dict(
        con.execute(
            "select arm, list(distinct model order by model) from results group by arm"
        ).fetchall()
    )
    assert models["baseline"] == ["shadow-large"]
    assert set(models["candidate"]) == {"shadow-large", "shadow-small"}
    lags = replayer.stats.lags_ms
    # A lag for every first attempt on each arm (as stored), late ones counted, never hidden.
    assert len(lags) == 2 * len(window)
    assert replayer.stats.late == sum(lag > 5.0 for lag in lags)
    assert all(a.ok == len(window) for a in replayer.stats.arms.values())


async def test_a_slow_target_never_delays_later_sends(
    window: list[TraceRecord], mock_large: MockLLMServer, tmp_path: Path
) -> None:
    """With a candidate that hangs, the baseline's sends still leave on time (open loop)."""
    with MockLLMServer("large", time_scale=0, faults=FaultConfig(hang_rate=1.0)) as hanging:
        store = ResultsStore.open(tmp_path / "run.duckdb")
        targets = {
            "baseline": HttpTarget("baseline", ArmConfig(url=mock_large.url)),
            "candidate": HttpTarget("candidate", ArmConfig(url=hanging.url, timeout_s=1.0)),
        }
        writer = AsyncResultsWriter(store)
        records = window[:20]
        replayer = Replayer(
            FanOut(
                run_id="slow", targets=targets, writer=writer, pricing=PricingTable(DEFAULT_PRICES)
            ),
            items=items(records),
            offsets=list(recorded_schedule([r.captured_at for r in records], speed=40)),
        )
        await replayer.run()
        await writer.aclose()
        for target in targets.values():
            await target.aclose()
    stats = replayer.stats
    assert stats.arm("candidate").errors == {"timeout": 20}
    assert stats.arm("baseline").ok == 20
    assert max(stats.lags_ms) < 50
    store.close()
    rows = query(tmp_path, "select min(latency_ms) from results where arm = 'candidate'")
    assert rows is not None
    assert isinstance(rows[0], float)
    assert rows[0] >= 1000.0  # a timeout counts at its timeout value


async def test_a_failing_candidate_opens_its_breaker(
    window: list[TraceRecord], mock_large: MockLLMServer, tmp_path: Path
) -> None:
    """A candidate answering 5xx trips its breaker; its later sends are skipped and counted."""
    with MockLLMServer("small", time_scale=0, faults=FaultConfig(error_rate=1.0)) as failing:
        store = ResultsStore.open(tmp_path / "run.duckdb")
        breaker = CircuitBreaker(error_rate=0.5, min_requests=5, cooldown_s=60)
        replayer = await replay(
            window,
            store,
            baseline=mock_large.url,
            candidate=failing.url,
            speed=100.0,
            breakers={"candidate": breaker},
            max_in_flight=1,
        )
    candidate = replayer.stats.arm("candidate")
    assert breaker.opened == 1
    assert candidate.sent == 5
    assert candidate.skipped == len(window) - 5
    store.close()
    skipped = query(
        tmp_path,
        "select count(*) from results where arm = 'candidate' and error = 'skipped_breaker'",
    )
    assert skipped == (len(window) - 5,)
    assert replayer.stats.arm("baseline").ok == len(window)


async def test_the_budget_cap_stops_the_run(
    window: list[TraceRecord], mock_large: MockLLMServer, tmp_path: Path
) -> None:
    """Once the priced cost reaches --max-cost-usd the replay stops scheduling."""
    store = ResultsStore.open(tmp_path / "run.duckdb")
    replayer = await replay(
        window,
        store,
        baseline=mock_large.url,
        candidate=mock_large.url,
        speed=50.0,
        max_cost_usd=0.02,
        max_in_flight=2,
    )
    stats = replayer.stats
    store.close()
    row = query(tmp_path, "select max(cost_usd) from results")
    assert row is not None
    assert stats.budget_exhausted
    assert stats.scheduled < len(window)
    # Sends already in flight when the cap is reached still complete (at most max_in_flight).
    assert 0.02 <= stats.cost_usd <= 0.02 + 2 * float(row[0])  # type: ignore[arg-type]


def test_captured_credentials_are_never_replayed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Captured headers are not replayed (only pass_headers); the arm's key comes from its env."""
    record = TraceRecord(
        trace_id="t",
        captured_at=1,
        request=HttpRequest(
            method="POST",
            path="/v1/chat/completions",
            headers={
                "authorization": "Bearer captured-user-token",
                "cookie": "s=1",
                "x-tenant": "acme",
                "x-custom": "[REDACTED]",
            },
            body='{"model": "m", "stream": true, "messages": []}',
        ),
    )
    monkeypatch.setenv("CANDIDATE_KEY", "sk-candidate-own")
    arm = ArmConfig(
        url="http://127.0.0.1:9",
        api_key_env="CANDIDATE_KEY",
        headers={"x-arm": "candidate"},
        body_overrides={"model": "small-v2", "metadata.route": "b"},
    )
    target = HttpTarget("candidate", arm)
    request = build_request(record, arm, secret=target._secret, pass_headers=["x-tenant"])
    assert request.headers["authorization"] == "Bearer sk-candidate-own"
    assert "cookie" not in request.headers
    assert "x-custom" not in request.headers
    assert request.headers["x-tenant"] == "acme"  # named in pass_headers
    assert "x-tenant" not in build_request(record, arm, secret=None).headers
    assert request.headers["x-arm"] == "candidate"
    body = json.loads(request.body)
    assert body["model"] == "small-v2"
    assert body["metadata"] == {"route": "b"}
    assert body["stream_options"] == {"include_usage": True}
    assert request.url == "http://127.0.0.1:9/v1/chat/completions"


def test_paths_outside_the_allow_list_are_skipped_and_counted(tmp_path: Path) -> None:
    """Only inference paths are replayed by default; a dry run shows what would be skipped."""
    records = [
        TraceRecord(
            trace_id=f"t{i}",
            captured_at=1_000_000_000 + i * 1_000_000,
            request=HttpRequest(method="POST", path=path, body="{}"),
        )
        for i, path in enumerate(["/v1/chat/completions", "/v1/files", "/admin/delete"])
    ]
    source = tmp_path / "mixed.jsonl"
    write_jsonl(source, records)
    result = subprocess.run(
        [sys.executable, "-m", "shadow", "replay", str(source), "--baseline", "http://127.0.0.1:9",
         "--candidate", "http://127.0.0.1:9", "--dry-run"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "t0" in result.stdout
    assert "/admin/delete" not in result.stdout
    assert "1 records to baseline, candidate" in result.stdout
    assert "2 skipped (skipped_path: 2)" in result.stdout


def run_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "shadow", "replay", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_parts(out: Path, timeout_s: float = 30) -> None:
    """Block until the Parquet results directory holds a first part (bounded)."""
    deadline = time.monotonic() + timeout_s
    while not list(out.glob("results/*.parquet")):
        if time.monotonic() > deadline:
            raise AssertionError("no results part appeared")
        time.sleep(0.05)


def parquet_counts(out: Path) -> dict[tuple[str, str], int]:
    con = duckdb.connect()
    rows = con.execute(
        f"select trace_id, arm, count(*) from read_parquet('{out}/results/*.parquet') group by all"
    ).fetchall()
    return {(t, a): n for t, a, n in rows}


def test_sigint_stops_scheduling_and_flushes_results(
    window: list[TraceRecord], tmp_path: Path
) -> None:
    """Ctrl-C stops new sends, lets in-flight ones finish, flushes and prints the summary."""
    source = tmp_path / "traces.jsonl"
    write_jsonl(source, window)
    out = tmp_path / "run"
    with MockLLMServer("large", time_scale=0.2) as slow:
        proc = run_cli(str(source), "--baseline", slow.url, "--candidate", slow.url,
                       "--speed", "1", "--out", f"{out}/", "--json")  # fmt: skip
        wait_for_parts(out)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr  # interrupted runs exit 1
    summary = json.loads(stdout)
    assert summary["stopped_early"]
    assert 0 < summary["scheduled"] < len(window)
    counts = parquet_counts(out)
    written = sum(counts.values())
    sent = sum(arm["sent"] for arm in summary["arms"].values())
    assert written == sent
    assert set(counts.values()) == {1}


def test_a_killed_run_resumes_without_duplicates_or_gaps(
    window: list[TraceRecord], tmp_path: Path
) -> None:
    """SIGKILL mid-run, then --resume: every (trace, arm) ends up exactly once."""
    source = tmp_path / "traces.jsonl"
    write_jsonl(source, window)
    out = tmp_path / "run"
    with MockLLMServer("large", time_scale=0.05) as target:
        args = [str(source), "--baseline", target.url, "--candidate", target.url,
                "--speed", "2", "--out", f"{out}/", "--run-id", "killed", "--quiet"]  # fmt: skip
        proc = run_cli(*args)
        wait_for_parts(out)
        proc.kill()
        proc.communicate(timeout=30)
        before = parquet_counts(out)
        assert 0 < len(before) < 2 * len(window)
        resumed = run_cli(*args[:-3], "--resume", "killed", "--quiet", "--speed", "50")
        _, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr
    after = parquet_counts(out)
    expected = {(r.trace_id, arm) for r in window for arm in ("baseline", "candidate")}
    assert set(after) == expected
    assert set(after.values()) == {1}


def test_cli_bad_source_is_one_line_exit_2(tmp_path: Path) -> None:
    """A source that is neither a file nor kafka:// is a one-line usage error."""
    result = subprocess.run(
        [sys.executable, "-m", "shadow", "replay", "nowhere.txt", "--baseline", "http://x",
         "--candidate", "http://y"],
        capture_output=True, text=True, timeout=60, env={**os.environ}, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1


def test_from_and_to_select_a_time_window_of_the_source(
    window: list[TraceRecord], tmp_path: Path
) -> None:
    """--from/--to (epoch seconds or ISO 8601) keep only records captured in that window."""
    source = tmp_path / "traces.jsonl"
    write_jsonl(source, window)
    times = sorted(r.captured_at for r in window)
    lo, hi = times[5], (times[14] + times[15]) // 2  # hi falls between two records
    expected = sum(lo <= t < hi for t in times)
    from datetime import UTC, datetime

    iso_hi = datetime.fromtimestamp(hi // 1000 / 1e6, tz=UTC).isoformat()
    exact_lo = f"{lo // 10**9}.{lo % 10**9:09d}"  # epoch seconds, to the nanosecond
    result = subprocess.run(
        [sys.executable, "-m", "shadow", "replay", str(source), "--baseline", "http://127.0.0.1:9",
         "--candidate", "http://127.0.0.1:9", "--dry-run", "--from", exact_lo,
         "--to", iso_hi],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"{expected} records to baseline, candidate" in result.stdout


async def test_retries_write_every_attempt_with_its_cost(
    window: list[TraceRecord], mock_large: MockLLMServer, tmp_path: Path
) -> None:
    """With --retries 2 a failing arm gets three attempts per record, each its own row."""
    records = window[:6]
    with MockLLMServer("small", time_scale=0, faults=FaultConfig(error_rate=1.0)) as failing:
        store = ResultsStore.open(tmp_path / "run.duckdb")
        replayer = await replay(
            records, store, baseline=mock_large.url, candidate=failing.url, speed=100.0, retries=2
        )
    store.close()
    with duckdb.connect(str(tmp_path / "run.duckdb"), read_only=True) as con:
        attempts = con.execute(
            "select attempt, count(*) from results where arm = 'candidate' group by 1 order by 1"
        ).fetchall()
        baseline = con.execute(
            "select max(attempt), count(*) from results where arm = 'baseline'"
        ).fetchone()
    assert attempts == [(0, 6), (1, 6), (2, 6)]
    assert baseline == (0, 6)  # successes are not retried
    assert replayer.stats.arm("candidate").sent == 18


def test_a_stats_window_bounds_memory_for_long_running_mirrors() -> None:
    """With a window, only the newest lags and latencies are kept and summarised."""
    from shadow.replay.stats import ReplayStats

    stats = ReplayStats(run_id="m", total=0, window=3)
    for lag in (100.0, 1.0, 2.0, 3.0):
        stats.lags_ms.append(lag)
        stats.arm("candidate").latencies_ms.append(lag * 10)
    assert list(stats.lags_ms) == [1.0, 2.0, 3.0]
    assert stats.lag_percentile(100) == 3.0
    assert stats.lag_percentile(50, last=2) == 2.5
    assert stats.arm("candidate").latency_percentile(0) == 10.0
    unbounded = ReplayStats(run_id="r", total=0)
    for lag in range(1000):
        unbounded.lags_ms.append(float(lag))
    assert len(unbounded.lags_ms) == 1000
