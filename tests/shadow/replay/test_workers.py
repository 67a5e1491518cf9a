"""``shadow replay --workers N``: one run split across processes sharing one schedule."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb

from shadow.results.views import results_relation
from shadow.sim import MockLLMServer
from tests.shadow.replay.fakes import trace_file


def _replay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shadow", "replay", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_two_workers_send_every_record_once_per_arm_and_store_it(
    mock_large: MockLLMServer, tmp_path: Path
) -> None:
    """Each record reaches each arm exactly once across the workers; one merged summary."""
    out = str(tmp_path / "out") + "/"
    source = trace_file(tmp_path, 21)
    result = _replay(
        source, "--baseline", mock_large.url, "--candidate", mock_large.url, "--rate", "200",
        "--arrival", "constant", "--out", out, "--json", "--workers", "2", "--run-id", "w2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["workers"] == 2
    assert summary["records"] == 21
    assert summary["scheduled"] == 21
    assert {arm: s["sent"] for arm, s in summary["arms"].items()} == {
        "baseline": 21,
        "candidate": 21,
    }
    con = duckdb.connect()
    results_relation(con, out)
    per_key = con.execute(
        "select arm, count(*), count(distinct trace_id) from results where run_id = 'w2' "
        "group by arm order by arm"
    ).fetchall()
    assert per_key == [("baseline", 21, 21), ("candidate", 21, 21)]
    traces = con.execute("select count(*), count(distinct trace_id) from traces").fetchone()
    assert traces == (21, 21)
    lags = con.execute(
        "select count(*), max((sent_at - scheduled_at) * 1000) from results where attempt = 0"
    ).fetchone()
    assert lags is not None
    assert lags[0] == 42
    assert abs(lags[1] - summary["lag_max_ms"]) < 1e-6  # the summary's lag is the stored one
    writers = con.execute("select status from runs where run_id = 'w2'").fetchall()
    assert writers == [("done",)]


def test_workers_refuse_a_duckdb_out_in_one_line(tmp_path: Path) -> None:
    """A split writes Parquet parts: a DuckDB file out is refused before anything starts."""
    result = _replay(
        trace_file(tmp_path, 2), "--baseline", "http://127.0.0.1:9", "--candidate",
        "http://127.0.0.1:9", "--out", str(tmp_path / "run.duckdb"), "--workers", "2",
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "Parquet" in lines[0]
    assert not (tmp_path / "run.duckdb").exists()
