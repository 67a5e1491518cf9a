"""The tee: a bounded queue from the live path to the sink, with a disk spool for bad times.

::

    live path ──submit()──▶ queue (bounded) ──worker──▶ build + redact + encode ──▶ sink
                                                  │ sink failing, or spool not yet empty
                                                  ▼
                                            disk spool ──drainer──▶ sink (oldest first)

- :meth:`Tee.submit` never blocks and never raises: a full queue drops and counts.
- Records are built on the tee's own loop (large bodies in a thread). The sidecar runs the
  whole tee in its record worker process (:class:`~capture.worker.ProcessTee`), so its
  serving loop only hands exchanges over; ``CaptureMiddleware`` runs it on the app's loop.
- The worker sends batches straight to the sink while it is healthy. When a delivery fails,
  that batch and every later one go to the spool, so order is kept; the drainer retries the
  spool with backoff and, once it is empty, the worker goes back to direct delivery.
- The spool has a disk cap; past it records are dropped and counted, never blocking.
- Delivery is at-least-once: a batch that timed out may still reach Kafka and also be
  spooled. ``trace_id`` is unique, so consumers deduplicate.
- Sent is not yet held. With a :class:`~capture.sinks.ConfirmingSink` (Kafka) the confirmer
  asks the sink every ``confirm_interval_s`` (and at once after a failed delivery) whether
  the broker still holds what it acknowledged; records a broker lost (it came back empty)
  go to the spool again, marked as re-deliveries, and the drainer sends them before anything
  newer. ``sent`` counts each record once, at its first acknowledgement; the
  ``records_unconfirmed`` gauge counts sent records not yet known to be held.

A spooled frame is ``[key length: u16][key][value]``; a re-delivery is the same frame behind
``0xFFFF`` (so keys are cut to 65,534 bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from capture.exchange import Exchange, RecordBuilder
from capture.intake import Intake, body_bytes
from capture.metrics import CaptureMetrics
from capture.sinks import ConfirmingSink, SinkError, TraceSink
from capture.spool import Segment, Spool
from shadow.trace.record import encode

__all__ = ["DrainReport", "Tee"]

log = logging.getLogger("shadow.capture")

_KEY_LEN = struct.Struct(">H")
_AGAIN = b"\xff\xff"  # a key length no frame has: what follows is a re-delivered frame
_YIELD_EVERY = 4
_OFF_LOOP_BYTES = 64 * 1024
"""Exchanges with more body bytes than this are built (redacted, encoded) in a worker thread."""


def _pack(key: bytes, value: bytes, *, again: bool = False) -> bytes:
    key = key[:65534]
    frame = _KEY_LEN.pack(len(key)) + key + value
    return _AGAIN + frame if again else frame


def _unpack(frame: bytes) -> tuple[bytes, bytes, bool]:
    again = frame[:2] == _AGAIN
    if again:
        frame = frame[2:]
    (n,) = _KEY_LEN.unpack_from(frame)
    return frame[2 : 2 + n], frame[2 + n :], again


@dataclass(frozen=True, kw_only=True)
class DrainReport:
    """What shutdown managed to deliver and what it left (in the spool, for the next start)."""

    sent: int
    spooled_pending: int
    dropped: int
    unconfirmed: int = 0
    """Sent records not known to be held when the sink closed (no re-delivery is left)."""

    def __str__(self) -> str:
        return (
            f"{self.sent} records sent ({self.unconfirmed} not confirmed held), "
            f"{self.spooled_pending} left in the spool for the next start, {self.dropped} dropped"
        )


class Tee:
    """Owns the queue, the worker and drainer tasks, the sink and the spool."""

    def __init__(
        self,
        *,
        builder: RecordBuilder,
        sink: TraceSink,
        spool: Spool,
        metrics: CaptureMetrics,
        queue_size: int = 10_000,
        batch_max: int = 500,
        retry_min_s: float = 0.2,
        retry_max_s: float = 5.0,
        confirm_interval_s: float = 1.0,
        linger_s: float = 0.0,
    ) -> None:
        self.builder = builder
        self.linger_s = linger_s
        """How long a batch waits for more exchanges before it is built and delivered."""
        self.sink = sink
        self.spool = spool
        self.metrics = metrics
        self.batch_max = batch_max
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.confirm_interval_s = confirm_interval_s
        self._confirming = sink if isinstance(sink, ConfirmingSink) else None
        self._check_now = asyncio.Event()
        self._again_pending = 0  # re-deliveries spooled by this process, not yet acknowledged
        self._unchecked_seen = 0
        self.intake = Intake(metrics, queue_size=queue_size, batch_max=batch_max)
        self._spool_lock = asyncio.Lock()
        self._spooling = not spool.empty  # a previous run left records: drain them first
        self._spool_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._in_progress = 0
        self.sent = 0
        metrics.watch(
            lambda: len(self.intake),
            lambda: float(self.spool_bytes),
            lambda: self.unconfirmed,
        )

    @property
    def spooling(self) -> bool:
        """Whether records currently go to the disk spool instead of straight to the sink."""
        return self._spooling

    @property
    def unconfirmed(self) -> int:
        """Sent records not yet known to be held (waiting for a check, or for re-delivery)."""
        held_by_sink = self._confirming.unconfirmed if self._confirming is not None else 0
        return held_by_sink + self._again_pending

    @property
    def sink_name(self) -> str:
        """Where records go (the sink's name: no credentials)."""
        return self.sink.name

    @property
    def spool_bytes(self) -> int:
        """Bytes the disk spool holds."""
        return int(self.spool.bytes_on_disk)

    @property
    def queue_depth(self) -> int:
        """Exchanges waiting for the worker."""
        return len(self.intake)

    @property
    def pending(self) -> int:
        """Exchanges taken and not yet sent, spooled or dropped (queued or being built)."""
        return len(self.intake) + self._in_progress

    def start(self) -> None:
        """Start the worker and drainer tasks on the running loop."""
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._worker(), name="shadow-tee-worker"),
            asyncio.create_task(self._drainer(), name="shadow-tee-drainer"),
        ]
        if self._confirming is not None:
            self._tasks.append(asyncio.create_task(self._confirmer(), name="shadow-tee-confirmer"))
        if self._spooling:
            self._spool_ready.set()

    def submit(self, exchange: Exchange) -> None:
        """Hand an exchange to the tee; never blocks, never raises (drops and counts instead)."""
        self.intake.submit(exchange)

    # -- worker -------------------------------------------------------------------------------

    def _encode(self, batch: Sequence[Exchange]) -> list[tuple[bytes, bytes]]:
        out = []
        for exchange in batch:
            out.extend(self._encode_one(exchange))
        return out

    async def _encode_yielding(self, batch: Sequence[Exchange]) -> list[tuple[bytes, bytes]]:
        """Encode a batch, giving the event loop back every few records.

        Building a record costs tens of microseconds; a burst of hundreds built in one go would
        hold the live path's event loop for milliseconds and show up in its p99.
        """
        out = []
        for i, exchange in enumerate(batch, start=1):
            if body_bytes(exchange) > _OFF_LOOP_BYTES:
                # redacting a large body takes tens of ms: off the live path's event loop (the
                # regexes hold the GIL, but the interpreter switches threads every 5 ms)
                out.extend(await asyncio.to_thread(self._encode_one, exchange))
                continue
            out.extend(self._encode_one(exchange))
            if i % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
        return out

    def _encode_one(self, exchange: Exchange) -> list[tuple[bytes, bytes]]:
        try:
            record, key = self.builder.build(exchange)
            return [(key, encode(record))]
        except Exception:  # a bug or a pathological body must not stop the tee
            log.exception("could not build a record for trace %s", exchange.trace_id)
            self.metrics.records_dropped.labels("build_error").inc()
            return []

    async def _worker(self) -> None:
        while True:
            batch = await self.intake.next_batch(self.linger_s)
            self._in_progress = len(batch)
            try:
                encoded = await self._encode_yielding(batch)
                if encoded:
                    await self._deliver(encoded)
            finally:
                self._in_progress = 0
            self.intake.done(len(batch))

    async def _deliver(self, encoded: list[tuple[bytes, bytes]]) -> None:
        if not self._spooling:
            try:
                await self.sink.send_batch(encoded)
            except SinkError as exc:
                self.metrics.sink_errors.inc()
                log.warning("sink %s failed, spooling to disk: %s", self.sink.name, exc)
                self._spooling = True
                self._spool_ready.set()
                self._check_now.set()
            else:
                self._count_sent(len(encoded))
                return
        await self._to_spool(encoded)

    async def _to_spool(
        self, encoded: Sequence[tuple[bytes, bytes]], *, again: bool = False
    ) -> int:
        frames = [_pack(key, value, again=again) for key, value in encoded]
        async with self._spool_lock:
            accepted = await asyncio.to_thread(self.spool.append, frames)
        self.metrics.records_spooled.inc(accepted)
        if accepted < len(frames):
            self.metrics.records_dropped.labels("spool_full").inc(len(frames) - accepted)
        return int(accepted)

    def _count_sent(self, n: int) -> None:
        self.sent += n
        self.metrics.records_sent.inc(n)

    # -- confirmer ----------------------------------------------------------------------------

    async def _confirmer(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):  # a timer between checks, or a prompt
                await asyncio.wait_for(self._check_now.wait(), self.confirm_interval_s)
            self._check_now.clear()
            await self._confirm_once()

    async def _confirm_once(self) -> None:
        """Ask the sink what its broker still holds; spool again what it lost."""
        sink = self._confirming
        if sink is None or not sink.unconfirmed:
            return
        try:
            lost = await sink.confirm()
        except SinkError as exc:
            log.info("cannot confirm delivery to %s yet: %s", self.sink.name, exc)
            return
        finally:
            self._count_unchecked(sink)
        if not lost:
            return
        accepted = await self._to_spool(lost, again=True)
        self._again_pending += accepted
        self.metrics.records_redelivered.inc(accepted)
        self._spooling = True
        self._spool_ready.set()

    def _count_unchecked(self, sink: ConfirmingSink) -> None:
        new = sink.unchecked - self._unchecked_seen
        if new > 0:
            self._unchecked_seen += new
            self.metrics.records_unchecked.inc(new)

    # -- drainer ------------------------------------------------------------------------------

    async def _drainer(self) -> None:
        while True:
            await self._spool_ready.wait()
            if await self._drain_once():
                self._spool_ready.clear()

    async def _drain_once(self, *, give_up_on_error: bool = False) -> bool:
        """Send every spooled record, oldest first; True when the spool is empty."""
        delay = self.retry_min_s
        while True:
            async with self._spool_lock:
                segments = await asyncio.to_thread(self.spool.closed_segments)
                if not segments:
                    if self.spool.empty:
                        self._spooling = (
                            False  # atomic with the check: the worker waits on the lock
                        )
                        return True
                    await asyncio.to_thread(self.spool.rotate)
                    continue
            for segment in segments:
                done = 0
                async with self._spool_lock:
                    batches = await asyncio.to_thread(self._read_segment, segment)
                for frames in batches:
                    unpacked = [_unpack(f) for f in frames]
                    again = sum(1 for _, _, is_again in unpacked if is_again)
                    while True:
                        try:
                            await self.sink.send_batch([(k, v) for k, v, _ in unpacked])
                            break
                        except SinkError as exc:
                            self.metrics.sink_errors.inc()
                            self._check_now.set()
                            if give_up_on_error:
                                return False
                            log.info("spool drain waits for %s: %s", self.sink.name, exc)
                            await asyncio.sleep(delay)  # backoff between retries, not a sync
                            delay = min(delay * 2, self.retry_max_s)
                    delay = self.retry_min_s
                    done += len(frames)
                    self._count_sent(len(frames) - again)
                    self._again_pending = max(0, self._again_pending - again)
                    async with self._spool_lock:
                        await asyncio.to_thread(self.spool.ack_partial, segment, done)
                async with self._spool_lock:
                    await asyncio.to_thread(self.spool.ack, segment)

    def _read_segment(self, segment: Segment) -> list[list[bytes]]:
        return list(self.spool.read_batches(segment, self.batch_max))

    # -- shutdown -----------------------------------------------------------------------------

    async def aclose(self, grace_s: float = 10.0) -> DrainReport:
        """Stop taking exchanges, deliver what is queued and spooled within ``grace_s``.

        Whatever cannot be delivered in time stays in the spool on disk and is sent by the next
        sidecar started on the same spool directory. Safe to call twice.
        """
        if self.intake.closed and not self._tasks:
            return self._report()
        self.intake.closed = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        worker, *others = self._tasks
        try:
            await asyncio.wait_for(self.intake.join(), grace_s)
        except TimeoutError:
            log.warning("shutdown grace of %.1f s ran out with records queued", grace_s)
        for task in others:  # from here on only this coroutine drains, so nothing is sent twice
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        try:
            await asyncio.wait_for(self._settle(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            log.warning("shutdown grace ran out; the rest stays in the spool for next start")
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        self._tasks = []
        leftover = self._encode(self.intake.take_all())
        if leftover:
            await self._to_spool(leftover)
        await self.sink.aclose()
        await asyncio.to_thread(self.spool.close)
        return self._report()

    async def _settle(self) -> None:
        """Drain the spool and confirm what was sent; drain again what a broker lost (bounded)."""
        for _ in range(3):
            if self._spooling:
                await self._drain_until_empty()
            await self._confirm_once()
            if not self._spooling:
                return

    async def _drain_until_empty(self) -> None:
        while not await self._drain_once(give_up_on_error=True):  # noqa: ASYNC110 (a retry backoff)
            await asyncio.sleep(self.retry_min_s)

    def _report(self) -> DrainReport:
        return DrainReport(
            sent=self.sent,
            spooled_pending=self.spool.pending,
            dropped=self.metrics.dropped(),
            unconfirmed=self.unconfirmed,
        )
