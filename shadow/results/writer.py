"""Buffering result rows from async code into a results store, in batches, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from shadow.closing import AsyncClosing
from shadow.errors import AnalysisError
from shadow.results.rows import ResultRow, ResultsSink, StagingSink, TraceRow

__all__ = ["AsyncResultsWriter"]


class AsyncResultsWriter(AsyncClosing):
    """Buffer rows from async code and write them to a sink in batches, off the event loop.

    A batch goes to ``sink.write`` (through ``asyncio.to_thread``, one at a time, in order)
    once ``batch_rows`` result rows wait or ``flush_interval_s`` has passed. :meth:`add`
    returns at once unless ``max_pending_rows`` wait (default 10 batches; then it waits for
    the sink, so memory stays bounded when the store is slower than the traffic).
    :meth:`flush` returns when every row added before it is durable: a Kafka source commits
    offsets only after that. A write that fails stops the writer, and every later
    :meth:`add` and :meth:`flush` (or else :meth:`aclose`) raises its exception, so no row is
    lost silently. Use it as an async context manager or call :meth:`aclose` (safe twice).

    A :class:`~shadow.results.rows.StagingSink` (the writer process) gets each :meth:`add`'s
    rows encoded at once, a few microseconds each, so that a batch costs the loop's process
    no more than handing the pieces over.
    """

    def __init__(
        self,
        sink: ResultsSink,
        *,
        batch_rows: int = 1000,
        flush_interval_s: float = 1.0,
        max_pending_rows: int | None = None,
    ) -> None:
        if batch_rows < 1:
            raise ValueError(f"batch_rows is {batch_rows}; it must be >= 1")
        if flush_interval_s <= 0:
            raise ValueError(f"flush_interval_s is {flush_interval_s}; it must be > 0")
        self.sink = sink
        self.batch_rows = batch_rows
        self.flush_interval_s = flush_interval_s
        self.max_pending_rows = max(max_pending_rows or 10 * batch_rows, batch_rows)
        self.rows_written = 0
        """Result rows durably written so far."""
        self.traces_written = 0
        """Trace rows durably written so far."""
        self._rows: list[ResultRow] = []
        self._traces: list[TraceRow] = []
        self._staging = sink if isinstance(sink, StagingSink) else None
        self._staged: list[bytes] = []
        self._staged_rows = 0  # result rows in _staged
        self._staged_traces = 0
        self._added = 0  # add() calls so far; flush() waits until _durable catches up
        self._durable = 0
        self._error: BaseException | None = None
        self._error_raised = False
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()

    async def add(self, rows: Sequence[ResultRow], traces: Sequence[TraceRow] = ()) -> None:
        """Buffer rows (and the traces they belong to) for the next batch."""
        self._check_usable()
        if self._staging is None:
            self._rows.extend(rows)
            self._traces.extend(traces)
        elif rows or traces:
            self._staged.append(self._staging.stage(rows, traces))
            self._staged_rows += len(rows)
            self._staged_traces += len(traces)
        self._added += 1
        self._start()
        if self._pending() >= self.batch_rows:
            self._wake.set()
        while self._pending() >= self.max_pending_rows and self._error is None:
            await self._progress.wait()
        self._raise_error()

    def _pending(self) -> int:
        """Result rows waiting for the next batch."""
        return len(self._rows) + self._staged_rows

    async def flush(self) -> None:
        """Return once every row added so far is durable in the sink."""
        self._check_usable()
        target = self._added
        self._start()
        while self._durable < target and self._error is None:
            self._wake.set()
            await self._progress.wait()
        self._raise_error()

    async def aclose(self) -> None:
        """Write what is buffered, then stop; safe to call twice."""
        if self._closing:
            return
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if not self._error_raised:
            self._raise_error()

    def _check_usable(self) -> None:
        self._raise_error()
        if self._closing:
            raise AnalysisError("the results writer is closed; rows added now would be lost")

    def _raise_error(self) -> None:
        if self._error is not None:
            self._error_raised = True
            raise self._error

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="shadow-results-writer"
            )

    def _notify_progress(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()

    async def _run(self) -> None:
        """The one task that writes: wait for a full batch, a flush or the interval; write."""
        try:
            while True:
                if not self._closing:
                    with contextlib.suppress(TimeoutError):  # the interval passed: write
                        await asyncio.wait_for(self._wake.wait(), self.flush_interval_s)
                self._wake.clear()
                rows, traces, upto = self._rows, self._traces, self._added
                self._rows, self._traces = [], []
                staged, n_rows, n_traces = self._staged, self._staged_rows, self._staged_traces
                self._staged, self._staged_rows, self._staged_traces = [], 0, 0
                if rows or traces:
                    await asyncio.to_thread(self.sink.write, rows, traces)
                    self.rows_written += len(rows)
                    self.traces_written += len(traces)
                if staged:
                    assert self._staging is not None
                    await asyncio.to_thread(self._staging.write_staged, staged)
                    self.rows_written += n_rows
                    self.traces_written += n_traces
                self._durable = upto
                self._notify_progress()
                if self._closing and not self._rows and not self._traces and not self._staged:
                    return
        except Exception as exc:  # kept; add/flush/aclose raise it to the caller
            self._error = exc
            self._notify_progress()
        except asyncio.CancelledError:
            self._error = AnalysisError("the results writer was cancelled before rows were written")
            self._notify_progress()
            raise
