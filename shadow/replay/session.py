"""One run's life, owned by one object: open, start, status, close in order.

:class:`RunSession` opens the trace source (and its dead-letter file) on entry; :meth:`begin`
opens the results store, records the run's start and opens the async writer, and takes the
arms' targets. On exit it writes how the run ended and closes everything, on every path::

    async with RunSession("traces.jsonl", out="run.duckdb") as session:
        items = await load_sorted(session.source)
        done = session.begin(run_id, arms=["baseline", "candidate"], config={}, targets=...)
        fanout = FanOut(run_id=run_id, targets=session.targets, writer=session.writer, ...)
        replayer = Replayer(fanout, items=items, offsets=...)
        session.track(replayer.stats)
        await replayer.run()

The run's status (``runs.status``) is one of:

- ``done``: it ran to its end (a mirror: until it was asked to stop);
- ``interrupted``: a replay stopped before its end (Ctrl-C), or the run was cancelled;
- ``budget_exhausted``: the budget cap (``safety.max_cost_usd``) stopped it: spent, or not
  enforceable because a model had no price (:mod:`shadow.replay.budget`);
- ``failed``: an exception left the block; it is written, then re-raised.

Closing order: the writer is flushed and closed first (its failure makes the run ``failed``),
then the targets, the source and the dead-letter file; then the run's status and counts are
written and the store is closed.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import secrets
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Self

from shadow.errors import UsageError
from shadow.replay.sources import TraceSource, open_source
from shadow.replay.stats import ReplayStats
from shadow.replay.targets import Target
from shadow.results.parquet import ParquetResultsWriter
from shadow.results.process import ProcessSink
from shadow.results.store import ResultsStore, open_results
from shadow.results.writer import AsyncResultsWriter
from shadow.trace.deadletter import DeadLetterFile

__all__ = [
    "RunSession",
    "RunStatus",
    "UnknownRunError",
    "new_mirror_run_id",
    "new_run_id",
    "run_status",
]

log = logging.getLogger("shadow.replay.session")

RunStatus = Literal["done", "interrupted", "failed", "budget_exhausted"]


class UnknownRunError(UsageError):
    """A run asked to resume has no results in the store (a wrong id, or the wrong store)."""

    def __init__(self, run_id: str, out: str) -> None:
        super().__init__(f"run {run_id!r} has no results in {out}; check the run id")
        self.run_id = run_id
        self.out = out


def new_run_id() -> str:
    """A fresh replay run id: UTC time to the second and 6 random hex digits."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def new_mirror_run_id() -> str:
    """A fresh mirror run id: ``mirror-`` and the local time to the second."""
    return "mirror-" + time.strftime("%Y%m%d-%H%M%S")


def run_status(stats: ReplayStats, *, live: bool = False) -> RunStatus:
    """How a run that returned normally ended, from its stats.

    A live run (the mirror) ends by being stopped, so a stop request alone is ``done`` there.
    """
    if stats.budget_exhausted:
        return "budget_exhausted"
    if stats.stopped_early and not live:
        return "interrupted"
    return "done"


class RunSession:
    """Owns one run: its source, results store, writer and targets (see the module docstring).

    Args:
        source: what :func:`~shadow.replay.sources.open_source` opens (a file or ``kafka://``).
        out: the results store (a DuckDB file, or ``DIR/`` for Parquet parts).
        dead_letter: where unusable records go (default: ``<out>.dead.jsonl``).
        batch_rows, flush_interval_s: the :class:`AsyncResultsWriter`'s batching.
        writer_process: write the batches in a child process (:mod:`shadow.results.process`),
            so writing never holds the sending loop's GIL.

    The other keyword arguments are :func:`~shadow.replay.sources.open_source`'s.
    """

    def __init__(
        self,
        source: str,
        *,
        out: str,
        dead_letter: str | None = None,
        group_id: str | None = None,
        follow: bool = False,
        limit: int | None = None,
        from_time_ns: int | None = None,
        to_time_ns: int | None = None,
        batch_rows: int = 1000,
        flush_interval_s: float = 1.0,
        writer_process: bool = False,
    ) -> None:
        self.source_spec = source
        self.out = out
        self.dead_letter = DeadLetterFile(dead_letter or f"{out.rstrip('/')}.dead.jsonl")
        self.run_id: str | None = None
        self.status: RunStatus | None = None
        """How the run ended; set on exit once the run had begun."""
        self.summary: dict[str, object] = {}
        """The counts written with the status (the tracked stats' summary)."""
        self._source_options: dict[str, Any] = {
            "group_id": group_id,
            "follow": follow,
            "limit": limit,
            "from_time_ns": from_time_ns,
            "to_time_ns": to_time_ns,
        }
        self._batch_rows = batch_rows
        self._flush_interval_s = flush_interval_s
        self._writer_process = writer_process
        self._sink: ProcessSink | None = None
        self._source: TraceSource | None = None
        self._store: ResultsStore | ParquetResultsWriter | None = None
        self._writer: AsyncResultsWriter | None = None
        self._targets: dict[str, Target] = {}
        self._stats: ReplayStats | None = None
        self._live = False
        self._closed = False

    @property
    def source(self) -> TraceSource:
        """The trace source (open inside the ``async with`` block)."""
        if self._source is None:
            raise RuntimeError("RunSession.source is only open inside `async with`")
        return self._source

    @property
    def writer(self) -> AsyncResultsWriter:
        """The async results writer (open once :meth:`begin` returned)."""
        if self._writer is None:
            raise RuntimeError("RunSession.writer is only open after begin()")
        return self._writer

    @property
    def targets(self) -> Mapping[str, Target]:
        """The arms' targets, by name (owned by the session from :meth:`begin` on)."""
        return self._targets

    async def __aenter__(self) -> Self:
        try:
            self._source = open_source(
                self.source_spec, dead_letter=self.dead_letter, **self._source_options
            )
        except BaseException:
            self.dead_letter.close()
            raise
        return self

    def begin(
        self,
        run_id: str,
        *,
        arms: Sequence[str],
        config: Mapping[str, Any],
        targets: Mapping[str, Target],
        resume: bool = False,
    ) -> set[tuple[str, str]]:
        """Open the store, record that ``run_id`` is running and open the writer.

        The session owns ``targets`` from here on (they are closed on exit, even when this
        raises). Returns the ``(trace_id, arm)`` pairs already answered: empty for a new run.

        Raises:
            UnknownRunError: ``resume`` is set and the store holds no results for ``run_id``.
        """
        if self._store is not None:
            raise RuntimeError("RunSession.begin() was already called")
        self._targets = dict(targets)
        store = self._store = open_results(self.out)
        done: set[tuple[str, str]] = set()
        if resume:
            done = store.done_keys(run_id)
            if not done:
                raise UnknownRunError(run_id, self.out)
        store.start_run(run_id, source=self.source_spec, config=config, arms=list(arms))
        self.run_id = run_id
        # A daemonic process (a multiprocessing pool's) may not start one of its own.
        in_process = not self._writer_process or multiprocessing.current_process().daemon
        sink = self._sink = None if in_process else ProcessSink(store)
        self._writer = AsyncResultsWriter(
            sink or store, batch_rows=self._batch_rows, flush_interval_s=self._flush_interval_s
        )
        return done

    def track(self, stats: ReplayStats, *, live: bool = False) -> None:
        """Take the run's status and counts from ``stats`` on exit (``live``: a mirror)."""
        self._stats = stats
        self._live = live

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._closed:
            return
        self._closed = True
        if exc is None:
            status = run_status(self._stats, live=self._live) if self._stats else "done"
        elif isinstance(exc, Exception):
            status = "failed"
        else:  # cancelled, or KeyboardInterrupt: stopped from outside, not broken
            status = "interrupted"
        errors: list[BaseException] = []
        if self._writer is not None:
            try:
                await self._writer.aclose()  # flushed before the store is closed
            except Exception as error:
                errors.append(error)
                status = "failed"
        if self._sink is not None:
            try:
                await asyncio.to_thread(self._sink.close)
            except Exception as error:
                errors.append(error)
        for target in self._targets.values():
            try:
                await target.aclose()
            except Exception as error:
                errors.append(error)
        if self._source is not None:
            try:
                await self._source.aclose()
            except Exception as error:
                errors.append(error)
        self.dead_letter.close()
        if self._store is not None:
            try:
                if self.run_id is not None:
                    self.summary = self._stats.as_dict() if self._stats else {}
                    self._store.finish_run(self.run_id, status=status, counts=self.summary)
                    self.status = status
            except Exception as error:
                errors.append(error)
            finally:
                self._store.close()
        if exc is not None:
            for later in errors:  # the exception in flight wins; these are only logged
                log.error("while closing run %s after %r: %r", self.run_id, exc, later)
        elif errors:
            raise errors[0]
