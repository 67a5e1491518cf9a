"""AsyncResultsWriter: batches from async code, written off the event loop, no row lost."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from shadow.errors import AnalysisError
from shadow.results.rows import ResultRow, TraceRow
from shadow.results.store import ResultsStore
from shadow.results.writer import AsyncResultsWriter


def _row(trace_id: str = "t-1", arm: str = "baseline") -> ResultRow:
    return ResultRow(
        run_id="run-1", trace_id=trace_id, arm=arm, scheduled_at=1_700_000_000.0, ok=True
    )


def _trace(trace_id: str = "t-1") -> TraceRow:
    return TraceRow(
        run_id="run-1",
        trace_id=trace_id,
        captured_at=1_700_000_000_000_000_000,
        service="chat-api",
        method="POST",
        path="/v1/chat/completions",
    )


class _FakeStore:
    """A sink that records batches and the thread each write ran on, and can fail or block."""

    def __init__(self, *, fail: Exception | None = None, gate: threading.Event | None = None):
        self.batches: list[list[ResultRow]] = []
        self.threads: list[int] = []
        self.fail = fail
        self.gate = gate
        self.loop = asyncio.get_running_loop()
        self.entered = asyncio.Event()
        self.wrote = asyncio.Event()

    def write(self, results: Sequence[ResultRow], traces: Sequence[TraceRow] = ()) -> None:
        self.threads.append(threading.get_ident())
        self.loop.call_soon_threadsafe(self.entered.set)
        if self.gate is not None:
            self.gate.wait(timeout=10)
        if self.fail is not None:
            raise self.fail
        self.batches.append(list(results))
        self.loop.call_soon_threadsafe(self.wrote.set)


async def test_flush_makes_added_rows_visible_in_the_store(tmp_path: Path) -> None:
    """After flush() the rows added so far are in the DuckDB file, and counted."""
    store = ResultsStore.open(tmp_path / "run.duckdb")
    async with AsyncResultsWriter(store, batch_rows=1000, flush_interval_s=60) as writer:
        await writer.add([_row("t-1"), _row("t-1", "candidate")], [_trace("t-1")])
        await writer.add([_row("t-2")])
        assert store.done_keys("run-1") == set()
        await writer.flush()
        assert store.done_keys("run-1") == {
            ("t-1", "baseline"),
            ("t-1", "candidate"),
            ("t-2", "baseline"),
        }
        assert (writer.rows_written, writer.traces_written) == (3, 1)
    store.close()


async def test_aclose_writes_what_is_buffered() -> None:
    """aclose() writes the rows still waiting, and can be called twice."""
    store = _FakeStore()
    writer = AsyncResultsWriter(store, batch_rows=100, flush_interval_s=60)
    await writer.add([_row(f"t-{i}") for i in range(5)])
    await writer.aclose()
    await writer.aclose()
    assert [len(batch) for batch in store.batches] == [5]
    with pytest.raises(AnalysisError, match="closed"):
        await writer.add([_row()])


async def test_a_full_batch_is_written_without_a_flush() -> None:
    """Reaching batch_rows starts a write in the background, in order."""
    store = _FakeStore()
    async with AsyncResultsWriter(store, batch_rows=10, flush_interval_s=60) as writer:
        await writer.add([_row(f"t-{i}") for i in range(10)])
        await asyncio.wait_for(store.wrote.wait(), timeout=5)
        assert [row.trace_id for row in store.batches[0]] == [f"t-{i}" for i in range(10)]


async def test_waiting_rows_are_written_after_the_interval() -> None:
    """Rows short of a batch are written once flush_interval_s has passed."""
    store = _FakeStore()
    async with AsyncResultsWriter(store, batch_rows=1000, flush_interval_s=0.01) as writer:
        await writer.add([_row()])
        await asyncio.wait_for(store.wrote.wait(), timeout=5)
    assert [len(batch) for batch in store.batches] == [1]


async def test_a_failing_store_raises_on_the_next_flush_and_add() -> None:
    """A background write error is raised by the next flush and every later add."""
    store = _FakeStore(fail=AnalysisError("cannot write results to x.duckdb: disk full"))
    writer = AsyncResultsWriter(store, batch_rows=1, flush_interval_s=60)
    await writer.add([_row()])
    with pytest.raises(AnalysisError, match="disk full"):
        await writer.flush()
    with pytest.raises(AnalysisError, match="disk full"):
        await writer.add([_row("t-2")])
    await writer.aclose()  # the error was reported already
    assert writer.rows_written == 0


async def test_an_unreported_failure_is_raised_by_aclose() -> None:
    """A write that fails during aclose is raised there rather than lost."""
    store = _FakeStore(fail=OSError("disk full"))
    writer = AsyncResultsWriter(store, batch_rows=100, flush_interval_s=60)
    await writer.add([_row()])
    with pytest.raises(OSError, match="disk full"):
        await writer.aclose()


async def test_writes_run_on_another_thread_while_the_loop_keeps_going() -> None:
    """A blocked store write leaves the event loop free; the write runs on a worker thread."""
    gate = threading.Event()
    store = _FakeStore(gate=gate)
    async with AsyncResultsWriter(store, batch_rows=1000, flush_interval_s=60) as writer:
        await writer.add([_row()])
        flushing = asyncio.create_task(writer.flush())
        await asyncio.wait_for(store.entered.wait(), timeout=5)
        # The loop runs this coroutine while the store's write is still blocked on the gate.
        assert not flushing.done()
        await writer.add([_row("t-2")])
        gate.set()
        await asyncio.wait_for(flushing, timeout=5)
    assert store.threads
    assert threading.get_ident() not in store.threads
    assert [row.trace_id for batch in store.batches for row in batch] == ["t-1", "t-2"]
