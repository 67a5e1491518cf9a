"""A results store that cannot be read as one is bad input: one line, exit 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb

from shadow.results.parquet import ParquetResultsWriter
from shadow.results.rows import ResultRow
from shadow.results.store import ResultsStore


def _rows() -> list[ResultRow]:
    return [
        ResultRow(
            run_id="r",
            trace_id=f"t{i}",
            arm=arm,
            scheduled_at=float(i),
            sent_at=float(i),
            latency_ms=100.0 + i,
            status=200,
            ok=True,
            output_text="an answer",
        )
        for i in range(40)
        for arm in ("baseline", "candidate")
    ]


def _fill(sink: ResultsStore | ParquetResultsWriter) -> None:
    sink.start_run("r", source="t.jsonl", config={}, arms=["baseline", "candidate"])
    sink.write(_rows())
    sink.finish_run("r", status="done", counts={})


def _analyze(path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shadow", "analyze", path, "--embedder", "lexical"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_store_missing_a_column_is_named_with_the_column(tmp_path: Path) -> None:
    """A results table without ttft_ms says which column is missing, exit 2."""
    path = tmp_path / "run.duckdb"
    store = ResultsStore.open(path)
    _fill(store)
    store.close()
    with duckdb.connect(str(path)) as con:
        con.execute("ALTER TABLE results DROP COLUMN ttft_ms")
    result = _analyze(str(path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "table results lacks column(s) ttft_ms" in lines[0]


def test_a_corrupt_parquet_part_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """A part that is not Parquet (a truncated copy, a stray file) fails in one line, exit 2."""
    folder = tmp_path / "run"
    with ParquetResultsWriter(folder, writer_id="w1") as writer:
        _fill(writer)
    (folder / "results" / "part-zzz.parquet").write_bytes(b"PAR1 not really parquet")
    result = _analyze(f"{folder}/")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("shadow: error: cannot read the results in")
    assert "Traceback" not in result.stderr
