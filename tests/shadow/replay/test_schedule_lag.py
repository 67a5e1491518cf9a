"""The replay summary's schedule lag is the stored ``sent_at − scheduled_at`` of first attempts.

docs/architecture.md, "Metric definitions": schedule lag = ``sent_at − scheduled_at``, first
attempts only. The summary a replay prints must be the figure anyone recomputes from the
results table, not a measurement of its own taken at another moment.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pytest

from shadow.sim import FaultConfig, MockLLMServer
from shadow.trace.azure import import_azure
from shadow.trace.jsonl import write_jsonl


@pytest.fixture(scope="module")
def flaky() -> Iterator[MockLLMServer]:
    """mock-llm failing a third of its calls with a 5xx, so some first attempts are retried."""
    with MockLLMServer("large", seed=3, time_scale=0.01, faults=FaultConfig(error_rate=0.3)) as s:
        yield s


def test_summary_lag_equals_the_stored_first_attempt_lag(
    azure_csv: Path, mock_large: MockLLMServer, flaky: MockLLMServer, tmp_path: Path
) -> None:
    """A real replay (retries, a tight in-flight bound): its p50/p99/max lag and late count are
    those of ``(sent_at − scheduled_at) × 1000`` over the stored first attempts that were sent."""
    records = import_azure(azure_csv, seed=1, window_start=600.0, window_seconds=20.0)[:60]
    traces = tmp_path / "traces.jsonl"
    write_jsonl(traces, records)
    out = tmp_path / "run.duckdb"
    result = subprocess.run(
        [
            sys.executable, "-m", "shadow", "replay", str(traces),
            "--baseline", mock_large.url, "--candidate", flaky.url, "--out", str(out),
            "--speed", "40", "--retries", "1", "--max-in-flight", "4", "--json",
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    with duckdb.connect(str(out), read_only=True) as con:
        retried = con.execute("select count(*) from results where attempt > 0").fetchone()
        stored = [
            lag
            for (lag,) in con.execute(
                "select (sent_at - scheduled_at) * 1000 from results"
                " where attempt = 0 and sent_at is not null"
            ).fetchall()
        ]
        sql_quantiles = con.execute(
            "select quantile_cont((sent_at - scheduled_at) * 1000, [0.5, 0.99]) from results"
            " where attempt = 0 and sent_at is not null"
        ).fetchone()
    assert retried is not None
    assert retried[0] > 0  # retries exist and must not count
    assert len(stored) == 2 * len(records)  # one first attempt per trace per arm
    lags = np.asarray(stored)
    assert summary["lag_p50_ms"] == float(np.percentile(lags, 50))
    assert summary["lag_p99_ms"] == float(np.percentile(lags, 99))
    assert summary["lag_max_ms"] == float(lags.max())
    assert summary["late"] == int((lags > 5.0).sum())
    # The same figures as the results store computes them (quantile_cont, linear).
    assert sql_quantiles is not None
    assert [summary["lag_p50_ms"], summary["lag_p99_ms"]] == pytest.approx(sql_quantiles[0])
