"""The sidecar's tee in a worker process, so the serving loop only hands exchanges over.

The serving loop's whole share of the tee is a bounded queue and a hand-off: exchanges,
flattened to plain tuples, go in batches over a Unix socket pair to one worker process
(started from a ``forkserver``: nothing of the serving process's threads is forked). The
worker runs the whole :class:`~capture.tee.Tee` on its own event loop: the
:class:`~capture.exchange.RecordBuilder` (decoding, SSE reassembly, usage, redaction,
slices, encoding), the sink with its Kafka producer, the disk spool and its drainer, and the
confirmer. Nothing comes back but small state reports (the tee's counters, its queue depth,
spool bytes, unconfirmed records, whether it spools); the parent adds the counters to its
own metrics, so ``/shadow/metrics`` and ``/shadow/health`` read as if the tee ran there.
This module is the serving process's side; :mod:`capture.worker_process` is the worker's.

- The hand-off never blocks a request, and the worker never wakes the serving loop but to
  report. The parent's queue is bounded (when full, the exchange is dropped and counted
  ``queue_full``, :class:`~capture.intake.Intake`); a batch waits up to :data:`LINGER_S`
  for company, so the loop writes once per batch rather than once per request. Nothing
  waits for an answer; only when more than :data:`HANDOFF_BYTES` sit unread on the socket
  (the worker is behind) does the hand-off wait, and exchanges wait in the queue.
- The worker puts each batch in its tee's queue (a full one drops and counts there) and
  reports its state every :data:`REPORT_S` while anything changes (and at its start and
  end).
- When the worker dies, every exchange handed to it that its last report did not count done
  (sent, spooled or dropped) is counted ``records_dropped{reason="worker_died"}``: some of
  those may have reached Kafka after that report, so this errs towards counting a record
  lost, never towards counting one delivered. The next batch starts a new worker (at most
  one start per :data:`RESTART_S`; exchanges queue meanwhile), which drains the spool the
  dead one left.
- The worker keeps out of the serving loop's way: by default it takes the idle scheduling
  class (SCHED_IDLE: any other task that wants the CPU runs first) and, when the serving
  process is pinned to some CPUs, runs on the others (``capture.worker_priority``,
  ``capture.worker_cpus``). It gets what is left; when that is not enough its queue fills
  and records are shed and counted, never requests slowed.
- When the serving process dies, the worker reads end of input and closes its tee as at a
  stop: what it cannot deliver within the grace period stays in the spool. It ignores
  SIGINT and SIGTERM: the serving process decides when it stops.
- Shutdown hands over what is queued, then asks the worker to close its tee within what is
  left of the grace period; the worker's :class:`~capture.tee.DrainReport` comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import socket
import time
from multiprocessing.process import BaseProcess
from pathlib import Path

from capture.exchange import Exchange, RecordBuilder
from capture.intake import Intake
from capture.metrics import CaptureMetrics
from capture.sinks import TraceSink
from capture.tee import DrainReport
from capture.worker_process import (
    REPORT_S,
    Settings,
    State,
    flatten,
    frame,
    read_message,
    serve,
)
from shadow.errors import CaptureError
from shadow.logs import logging_settings

__all__ = ["HANDOFF_BYTES", "LINGER_S", "REPORT_S", "RESTART_S", "ProcessTee"]

log = logging.getLogger("shadow.capture")

HANDOFF_BYTES = 16 * 1024 * 1024
"""Bytes written to the worker's socket and not yet taken by it, past which the hand-off waits."""
LINGER_S = 0.005
"""How long a batch waits for more exchanges before it is handed over."""
RESTART_S = 1.0
"""The least time between two starts of the worker."""


# -- the serving process's side ---------------------------------------------------------------


class _Child:
    """One running worker and the serving process's end of its socket."""

    def __init__(
        self,
        process: BaseProcess,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        owner: ProcessTee,
    ) -> None:
        self.process = process
        self.reader = reader
        self.writer = writer
        self.owner = owner
        self.written = 0
        """Exchanges handed to this worker."""
        self.alive = True
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = loop.create_future()
        self.report: asyncio.Future[DrainReport] = loop.create_future()
        self.listener = asyncio.create_task(self._listen(), name="shadow-record-worker")

    async def _listen(self) -> None:
        try:
            while True:
                kind, body = await read_message(self.reader)
                if kind == "state":
                    self.owner.take_state(body)
                    if not self.ready.done():
                        self.ready.set_result(None)
                elif kind == "closed":
                    state, report = body
                    self.owner.take_state(state)
                    self.report.set_result(report)
                elif kind == "failed" and not self.ready.done():
                    self.ready.set_exception(CaptureError(body))
        except (asyncio.IncompleteReadError, OSError, IndexError):
            pass
        finally:
            self.alive = False
            for future in (self.ready, self.report):
                if not future.done():
                    future.set_exception(CaptureError("the record worker exited"))
                    future.exception()  # retrieved: nobody may be waiting for it
            if self.report.exception() is not None:
                self.owner.lost_worker(self)

    async def close(self) -> None:
        self.alive = False
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()
        self.listener.cancel()
        await asyncio.gather(self.listener, return_exceptions=True)
        await asyncio.to_thread(self.process.join, 10)
        if self.process.is_alive():
            self.process.kill()
            await asyncio.to_thread(self.process.join, 10)


class ProcessTee:
    """The tee for the sidecar: a hand-off on the serving loop, the rest in a worker process.

    It offers what the sidecar reads from a :class:`~capture.tee.Tee` (``submit``, ``sent``,
    ``spooling``, ``unconfirmed``, ``queue_depth``, ``spool_bytes``, ``aclose``), the state
    figures as of the worker's last report. ``sink`` must be unopened: it is pickled to the
    worker and opened there.
    """

    def __init__(
        self,
        *,
        builder: RecordBuilder,
        sink: TraceSink,
        spool_dir: str | Path,
        spool_max_bytes: int,
        metrics: CaptureMetrics,
        queue_size: int = 10_000,
        batch_max: int = 500,
        confirm_interval_s: float = 1.0,
        orphan_grace_s: float = 10.0,
        priority: str = "idle",
        cpus: str = "auto",
    ) -> None:
        self.metrics = metrics
        self.sink_name = sink.name
        self._settings = Settings(
            builder=builder,
            sink=sink,
            spool_dir=str(spool_dir),
            spool_max_bytes=spool_max_bytes,
            queue_size=queue_size,
            batch_max=batch_max,
            confirm_interval_s=confirm_interval_s,
            orphan_grace_s=orphan_grace_s,
            logging=None,
            priority=priority,
            cpus=cpus,
        )
        self.intake = Intake(metrics, queue_size=queue_size, batch_max=batch_max)
        self._child: _Child | None = None
        self._starting: asyncio.Lock | None = None
        self._last_start = -RESTART_S
        self._state: State = {}
        self._seen: dict[str, float] = {}
        self._hand_off_task: asyncio.Task[None] | None = None
        self.restarts = 0
        metrics.watch(lambda: self.queue_depth, lambda: self.spool_bytes, lambda: self.unconfirmed)

    # -- what the sidecar reads -----------------------------------------------------------------

    @property
    def sent(self) -> int:
        """Records the sink acknowledged, each once, as of the worker's last report."""
        return int(self.metrics.value("shadow_capture_records_sent_total"))

    @property
    def spooling(self) -> bool:
        """Whether the worker's records go to the disk spool instead of straight to the sink."""
        return bool(self._state.get("spooling", False))

    @property
    def unconfirmed(self) -> int:
        """Sent records not yet known to be held."""
        return int(self._state.get("unconfirmed", 0))

    @property
    def spool_bytes(self) -> int:
        """Bytes the disk spool holds."""
        return int(self._state.get("spool_bytes", 0))

    @property
    def queue_depth(self) -> int:
        """Exchanges waiting here, and those handed over the worker has not reported done."""
        return len(self.intake) + self._unsettled(self._child)

    def _unsettled(self, child: _Child | None) -> int:
        if child is None:
            return 0
        return max(0, child.written - int(self._state.get("settled", 0)))

    @property
    def alive(self) -> bool:
        """Whether a worker process is running (False before the first start and once dead)."""
        return self._child is not None and self._child.alive

    async def pid(self) -> int:
        """The worker's process id (starting it if needed)."""
        pid = (await self._running()).process.pid
        assert pid is not None
        return pid

    # -- state reports --------------------------------------------------------------------------

    def take_state(self, state: State) -> None:
        """A report from the worker: add its new counts to this process's metrics."""
        counts: dict[str, float] = state["counts"]
        delta = {key: n - self._seen.get(key, 0.0) for key, n in counts.items()}
        self._seen = counts
        self.metrics.add_tee_counts(delta)
        self._state = state

    def lost_worker(self, child: _Child) -> None:
        """The worker died: what it had not reported done is counted lost."""
        lost = self._unsettled(child)
        child.written = int(self._state.get("settled", 0))
        if lost:
            self.metrics.records_dropped.labels("worker_died").inc(lost)
        if not self.intake.closed:
            log.warning("the record worker died holding %d records", lost)

    # -- the worker's life ----------------------------------------------------------------------

    async def _running(self) -> _Child:
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            child = self._child
            if child is not None and child.alive:
                return child
            if child is not None:
                self.restarts += 1
                self._child = None
                await child.close()
            wait = self._last_start + RESTART_S - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # a restart backoff; exchanges queue meanwhile
            self._last_start = time.monotonic()
            child = await self._spawn()
            try:
                await asyncio.wait_for(asyncio.shield(child.ready), 30)
            except BaseException:
                await child.close()
                raise
            self._child = child
            return child

    async def _spawn(self) -> _Child:
        ours, theirs = socket.socketpair()
        context = multiprocessing.get_context("forkserver")
        # the fork server imports the tee's modules once; each worker forked from it is ready
        # at once (only takes effect before the fork server's first start)
        context.set_forkserver_preload(["capture.worker_process"])
        serving = tuple(sorted(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else ()
        settings = dataclasses.replace(
            self._settings, logging=logging_settings(), serving_cpus=serving
        )
        process = context.Process(
            target=serve, args=(theirs, settings), name="shadow-record-worker", daemon=True
        )
        try:
            await asyncio.to_thread(process.start)  # the first start launches the fork server
        finally:
            theirs.close()
        self._seen, self._state = {}, {}  # a new worker counts from zero
        reader, writer = await asyncio.open_connection(sock=ours)
        writer.transport.set_write_buffer_limits(high=HANDOFF_BYTES)
        return _Child(process, reader, writer, self)

    async def start(self) -> None:
        """Start the worker and the hand-off (a failed start is retried at the next batch)."""
        try:
            await self._running()
        except Exception as exc:
            log.warning("the record worker did not start (retried at the next batch): %s", exc)
        if self._hand_off_task is None:
            self._hand_off_task = asyncio.create_task(self._hand_off(), name="shadow-tee-hand-off")

    # -- the hand-off ---------------------------------------------------------------------------

    def submit(self, exchange: Exchange) -> None:
        """Hand an exchange to the tee; never blocks, never raises (drops and counts instead)."""
        self.intake.submit(exchange)

    async def _hand_off(self) -> None:
        while True:
            batch = await self.intake.next_batch(LINGER_S)
            await self._send(batch)
            self.intake.done(len(batch))

    async def _send(self, batch: list[Exchange]) -> None:
        try:
            payload = frame(("batch", [flatten(ex) for ex in batch]))
        except Exception:  # e.g. an exchange that does not pickle
            log.exception("could not hand %d exchanges to the record worker", len(batch))
            self.metrics.records_dropped.labels("build_error").inc(len(batch))
            return
        try:
            child = await self._running()
        except Exception as exc:
            log.warning("record worker unavailable, %d records dropped: %s", len(batch), exc)
            self.metrics.records_dropped.labels("worker_died").inc(len(batch))
            return
        child.written += len(batch)
        child.writer.write(payload)
        # Past HANDOFF_BYTES unread the hand-off waits (the worker is behind); exchanges then
        # wait in the bounded queue, and past it are shed. A dead worker's listener counts it.
        with contextlib.suppress(OSError):
            await child.writer.drain()

    # -- shutdown -------------------------------------------------------------------------------

    async def aclose(self, grace_s: float = 10.0) -> DrainReport:
        """Hand over what is queued, then have the worker close its tee within ``grace_s``.

        What the worker cannot deliver in time stays in the spool on disk for the next start.
        Safe to call twice.
        """
        if self.intake.closed and self._hand_off_task is None:
            return self._report(None)
        self.intake.closed = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        if self._hand_off_task is not None:
            try:
                await asyncio.wait_for(self.intake.join(), grace_s)
            except TimeoutError:
                log.warning("shutdown grace of %.1f s ran out with records queued", grace_s)
            self._hand_off_task.cancel()
            await asyncio.gather(self._hand_off_task, return_exceptions=True)
            self._hand_off_task = None
        leftover = len(self.intake.take_all())
        if leftover:
            self.metrics.records_dropped.labels("closed").inc(leftover)
        report: DrainReport | None = None
        child, self._child = self._child, None
        if child is not None and child.alive:
            left = max(0.0, deadline - loop.time())
            child.writer.write(frame(("close", left)))
            try:
                report = await asyncio.wait_for(asyncio.shield(child.report), left + 15)
            except (TimeoutError, CaptureError) as exc:
                log.warning("the record worker did not report its shutdown: %r", exc)
        if child is not None:
            await child.close()
        return self._report(report)

    def _report(self, report: DrainReport | None) -> DrainReport:
        return DrainReport(
            sent=self.sent,
            spooled_pending=(
                report.spooled_pending if report else int(self._state.get("spool_pending", 0))
            ),
            dropped=self.metrics.dropped(),
            unconfirmed=report.unconfirmed if report else self.unconfirmed,
        )
