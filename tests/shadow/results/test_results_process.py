"""ProcessSink: result rows written by a child process, every row kept, a dead child reported."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import duckdb
import pytest

from shadow.errors import AnalysisError
from shadow.results.parquet import ParquetResultsWriter
from shadow.results.process import ProcessSink
from shadow.results.rows import ResultRow, StagingSink, TraceRow
from shadow.results.store import ResultsStore
from shadow.results.views import results_relation
from shadow.results.writer import AsyncResultsWriter


def _row(trace_id: str, *, attempt: int = 0, text: str = "hi", ok: bool = True) -> ResultRow:
    return ResultRow(
        run_id="run-1",
        trace_id=trace_id,
        arm="baseline",
        attempt=attempt,
        slices={"tenant": "acme", "route": "chat"},
        scheduled_at=1_700_000_000.123456789,
        sent_at=1_700_000_000.1234599,
        ttft_ms=1.25,
        latency_ms=3.5,
        service_ms=3.25,
        status=200,
        ok=ok,
        model="m-1",
        prompt_tokens=12,
        completion_tokens=3,
        cached_tokens=0,
        cost_usd=0.000123,
        output_text=text,
        chunk_offsets_ms=[1.25, 2.5],
        cache_write_tokens=None,
    )


def _trace(trace_id: str) -> TraceRow:
    return TraceRow(
        run_id="run-1",
        trace_id=trace_id,
        captured_at=1_700_000_000_000_000_001,
        service="chat-api",
        slices={"tenant": "acme"},
        method="POST",
        path="/v1/chat/completions",
        request_body='{"model": "m-1"}',
    )


def _read(con: duckdb.DuckDBPyConnection) -> list[tuple[object, ...]]:
    return con.execute(
        "SELECT trace_id, attempt, slices, scheduled_at, sent_at, ok, output_text, "
        "chunk_offsets_ms, cost_usd FROM results ORDER BY trace_id, attempt"
    ).fetchall()


def _direct(tmp_path: Path, rows: list[ResultRow]) -> list[tuple[object, ...]]:
    """The same rows written the usual way (in this process), read back."""
    store = ResultsStore.open(tmp_path / "direct.duckdb")
    store.write(rows)
    assert store._con is not None
    read = _read(store._con)
    store.close()
    return read


def test_rows_written_by_the_child_into_a_duckdb_file_are_the_rows_written_directly(
    tmp_path: Path,
) -> None:
    """Every value survives the trip (epoch floats to the bit, maps, lists); traces too."""
    rows = [_row(f"t-{i}") for i in range(50)]
    store = ResultsStore.open(tmp_path / "run.duckdb")
    sink = ProcessSink(store)
    try:
        assert isinstance(sink, StagingSink)
        sink.write(rows[:20], [_trace("t-0")])
        sink.write_staged([sink.stage(rows[20:35]), sink.stage(rows[35:], [_trace("t-1")])])
    finally:
        sink.close()
    assert store._con is not None
    assert _read(store._con) == _direct(tmp_path, rows)
    assert store._con.execute("SELECT count(*) FROM traces").fetchone() == (2,)
    store.close()


def test_a_key_written_again_replaces_its_row_in_either_layout(tmp_path: Path) -> None:
    """Idempotent on (run_id, trace_id, arm, attempt), as the sinks themselves are."""
    for out in (tmp_path / "run.duckdb", tmp_path / "parts"):
        store = ResultsStore.open(out) if out.suffix else ParquetResultsWriter(out, writer_id="w")
        sink = ProcessSink(store)
        try:
            sink.write([_row("t-1", text="first"), _row("t-2")])
            sink.write([_row("t-1", text="second"), _row("t-1", attempt=1, ok=False)])
        finally:
            sink.close()
        store.close()
        con = duckdb.connect()
        results_relation(con, out)
        texts = con.execute(
            "SELECT trace_id, attempt, output_text FROM results ORDER BY trace_id, attempt"
        ).fetchall()
        assert texts == [("t-1", 0, "second"), ("t-1", 1, "hi"), ("t-2", 0, "hi")], out
        con.close()


def test_parquet_parts_come_from_the_child_under_the_writers_id(tmp_path: Path) -> None:
    store = ParquetResultsWriter(tmp_path / "parts", writer_id="host-1")
    sink = ProcessSink(store)
    try:
        sink.write([_row("t-1")], [_trace("t-1")])
    finally:
        sink.close()
    store.close()
    parts = sorted(p.name for p in (tmp_path / "parts").rglob("part-*.parquet"))
    assert parts == ["part-run-1-host-1-000001.parquet", "part-run-1-host-1-000002.parquet"]


def test_text_duckdb_refuses_is_stored_with_a_replacement_character(tmp_path: Path) -> None:
    store = ResultsStore.open(tmp_path / "run.duckdb")
    sink = ProcessSink(store)
    try:
        sink.write([_row("t-1", text="bad \ud800 text")])
    finally:
        sink.close()
    assert store._con is not None
    assert store._con.execute("SELECT output_text FROM results").fetchone() == ("bad \ufffd text",)
    store.close()


def test_a_killed_child_makes_the_next_write_raise_not_hang(tmp_path: Path) -> None:
    store = ResultsStore.open(tmp_path / "run.duckdb")
    sink = ProcessSink(store)
    try:
        pid = sink._process.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        sink._process.join(10)
        with pytest.raises(AnalysisError, match=r"writer process exited \(code -9\)"):
            sink.write([_row("t-1")])
    finally:
        sink.close()
    store.close()


def test_a_write_the_child_cannot_make_is_raised_to_the_caller(tmp_path: Path) -> None:
    """The child reports the sink's error; the writer stays usable for the next batch."""
    store = ParquetResultsWriter(tmp_path / "parts", writer_id="w")
    sink = ProcessSink(store)
    try:
        (tmp_path / "parts" / "results").rename(tmp_path / "moved")
        with pytest.raises(AnalysisError, match="cannot write"):
            sink.write([_row("t-1")])
        (tmp_path / "moved").rename(tmp_path / "parts" / "results")
        sink.write([_row("t-2")])
    finally:
        sink.close()
    store.close()
    assert [p.parent.name for p in (tmp_path / "parts").rglob("part-*.parquet")] == ["results"]


async def test_the_async_writer_stages_rows_for_the_child_and_counts_them(
    tmp_path: Path,
) -> None:
    """Through AsyncResultsWriter: batches by batch_rows, flush makes them durable."""
    store = ResultsStore.open(tmp_path / "run.duckdb")
    sink = ProcessSink(store)
    try:
        async with AsyncResultsWriter(sink, batch_rows=7, flush_interval_s=60) as writer:
            for i in range(30):
                await writer.add([_row(f"t-{i:02d}")], [_trace(f"t-{i:02d}")] if i % 2 else [])
            await writer.flush()
            assert store._con is not None
            assert store._con.execute("SELECT count(*) FROM results").fetchone() == (30,)
            await writer.add([_row("t-99")])
        assert (writer.rows_written, writer.traces_written) == (31, 15)
    finally:
        sink.close()
    assert store._con.execute("SELECT count(*) FROM results").fetchone() == (31,)
    store.close()


async def test_a_dead_child_stops_the_async_writer_with_its_error(tmp_path: Path) -> None:
    store = ResultsStore.open(tmp_path / "run.duckdb")
    sink = ProcessSink(store)
    try:
        writer = AsyncResultsWriter(sink, batch_rows=1, flush_interval_s=60)
        assert sink._process.pid is not None
        os.kill(sink._process.pid, signal.SIGKILL)
        await writer.add([_row("t-1")])
        with pytest.raises(AnalysisError, match="writer process exited"):
            await writer.flush()
        with pytest.raises(AnalysisError, match="writer process exited"):
            await writer.add([_row("t-2")])
        await writer.aclose()
    finally:
        sink.close()
    store.close()
