"""What runs in the sidecar's record worker process (capture/worker.py starts it).

The worker runs the whole :class:`~capture.tee.Tee` on its own event loop, fed batches of
flattened exchanges over a Unix socket pair; it sends back only ``("state", ...)`` reports
(every :data:`REPORT_S` while they change, and at start) and, at the end, ``("closed", (state,
report))``. Messages both ways are length-prefixed pickles (:func:`frame`,
:func:`read_message`): the parent's ``("batch", flats)`` and ``("close", grace_s)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from capture.exchange import Exchange, RecordBuilder
from capture.metrics import CaptureMetrics
from capture.sinks import TraceSink
from capture.spool import Spool
from capture.tee import Tee
from shadow.errors import CaptureError
from shadow.logs import configure_logging

__all__ = [
    "REPORT_S",
    "SINK_LINGER_S",
    "Settings",
    "State",
    "flatten",
    "frame",
    "read_message",
    "restore",
    "serve",
]

log = logging.getLogger("shadow.capture")

SINK_LINGER_S = 0.02
"""How long the worker's tee lets a batch gather before it builds and delivers it."""
REPORT_S = 0.2
"""How often the worker reports its state while it changes."""
_LEN = struct.Struct(">I")
_Flat = tuple[Any, ...]
State = dict[str, Any]
"""A state report: the tee's counts (``tee_counts``), ``settled``, spool and delivery figures."""


def frame(message: tuple[str, Any]) -> bytes:
    payload = pickle.dumps(message, protocol=5)
    return _LEN.pack(len(payload)) + payload


async def read_message(reader: asyncio.StreamReader) -> tuple[str, Any]:
    head = await reader.readexactly(_LEN.size)
    message: tuple[str, Any] = pickle.loads(  # noqa: S301 (our own process, over a socketpair)
        await reader.readexactly(_LEN.unpack(head)[0])
    )
    return message


def flatten(ex: Exchange) -> _Flat:
    """The exchange as a plain tuple: pickled in C, several times faster than the dataclass."""
    return (
        ex.trace_id, ex.started_ns, ex.t0, ex.method, ex.path, ex.query, ex.request_headers,
        ex.cap, ex.request_body.buf, ex.request_body.size, ex.status, ex.response_headers,
        ex.response_body.buf, ex.response_body.size, ex.chunks, ex.latency_ms, ex.upstream_ms,
        ex.error,
    )  # fmt: skip


def restore(flat: _Flat) -> Exchange:
    (trace_id, started_ns, t0, method, path, query, request_headers, cap, request_buf,
     request_size, status, response_headers, response_buf, response_size, chunks, latency_ms,
     upstream_ms, error) = flat  # fmt: skip
    ex = Exchange(
        trace_id=trace_id, started_ns=started_ns, t0=t0, method=method, path=path, query=query,
        request_headers=request_headers, cap=cap, status=status,
        response_headers=response_headers, chunks=chunks, latency_ms=latency_ms,
        upstream_ms=upstream_ms, error=error,
    )  # fmt: skip
    ex.request_body.buf, ex.request_body.size = request_buf, request_size
    ex.response_body.buf, ex.response_body.size = response_buf, response_size
    return ex


@dataclass(frozen=True, kw_only=True)
class Settings:
    """What the worker needs to run the tee (pickled to it)."""

    builder: RecordBuilder
    sink: TraceSink
    spool_dir: str
    spool_max_bytes: int
    queue_size: int
    batch_max: int
    confirm_interval_s: float
    orphan_grace_s: float
    """How long the worker may deliver for when the serving process is gone."""
    logging: tuple[str, bool] | None
    priority: str = "idle"
    """``idle`` (SCHED_IDLE) or ``normal``: ``capture.worker_priority``."""
    cpus: str = "auto"
    """``capture.worker_cpus``."""
    serving_cpus: tuple[int, ...] = ()
    """The CPUs the serving process may run on, when the worker started."""


def _state(tee: Tee, metrics: CaptureMetrics, received: int) -> State:
    return {
        "counts": metrics.tee_counts(),
        "settled": received - tee.pending,  # taken and sent, spooled or dropped
        "spool_bytes": tee.spool_bytes,
        "spool_pending": tee.spool.pending,
        "unconfirmed": tee.unconfirmed,
        "spooling": tee.spooling,
    }


def _yield_cpu() -> None:
    """Take Linux's idle class (any other task that wants the CPU runs first, at once).

    Where that is missing, ``nice`` 10. Only for work that may be shed: the replayer's results
    writer stays at ``nice`` 10, as in the idle class it starved whenever the sending loop
    shared its core or both cores were busy, and sends then waited for their rows.
    """
    if hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return
        except OSError as exc:
            log.info("the record worker cannot take the idle class (%s); nice 10 instead", exc)
    try:
        os.nice(10)
    except OSError as exc:
        log.warning("the record worker cannot lower its CPU priority: %s", exc)


def _place(settings: Settings) -> None:
    """Set the worker's CPUs and scheduling class (Linux; elsewhere it runs as it is)."""
    cpus: set[int] | None = None
    if settings.cpus == "auto":
        everything = set(range(os.cpu_count() or 1))
        others = everything - set(settings.serving_cpus)
        if settings.serving_cpus and others:
            cpus = others  # the serving process is pinned: keep off its CPUs
    elif settings.cpus != "inherit":
        cpus = {int(part) for part in settings.cpus.split(",")}
    if cpus is not None and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, cpus)
        except OSError as exc:
            log.warning("the record worker cannot run on CPUs %s: %s", sorted(cpus), exc)
    if settings.priority == "idle":
        _yield_cpu()


def serve(sock: socket.socket, settings: Settings) -> None:
    """The worker process's entry point."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # the serving process decides when to stop
    _place(settings)
    if settings.logging is not None:
        level, json = settings.logging
        configure_logging(level, json=json)
    try:
        import uvloop

        uvloop.run(worker_main(sock, settings))
    except ImportError:
        asyncio.run(worker_main(sock, settings))


async def report_changes(
    tee: Tee, metrics: CaptureMetrics, writer: asyncio.StreamWriter, received: Callable[[], int]
) -> None:
    """Every ``REPORT_S``, send the tee's state when it changed; ``received`` counts the
    exchanges handed over so far."""
    last: State | None = None
    while True:
        state = _state(tee, metrics, received())
        if state != last:
            writer.write(frame(("state", state)))
            last = state
        await asyncio.sleep(REPORT_S)  # a reporting period, not a synchronisation


async def worker_main(sock: socket.socket, settings: Settings) -> None:
    reader, writer = await asyncio.open_connection(sock=sock)
    metrics = CaptureMetrics()
    try:
        spool = Spool(Path(settings.spool_dir), max_bytes=settings.spool_max_bytes)
    except CaptureError as exc:
        writer.write(frame(("failed", str(exc))))
        await writer.drain()
        writer.close()
        return
    tee = Tee(
        builder=settings.builder,
        sink=settings.sink,
        spool=spool,
        metrics=metrics,
        queue_size=settings.queue_size,
        batch_max=settings.batch_max,
        confirm_interval_s=settings.confirm_interval_s,
        linger_s=SINK_LINGER_S,
    )
    tee.start()
    received = 0  # exchanges handed over
    reporter = asyncio.create_task(report_changes(tee, metrics, writer, lambda: received))
    grace_s = settings.orphan_grace_s
    try:
        while True:
            try:
                kind, body = await read_message(reader)
            except (asyncio.IncompleteReadError, OSError):
                log.warning("the sidecar's serving process is gone; the record worker stops")
                break
            if kind == "close":
                grace_s = float(body)
                break
            for flat in body:
                tee.submit(restore(flat))
            received += len(body)
    finally:
        reporter.cancel()
        await asyncio.gather(reporter, return_exceptions=True)
    report = await tee.aclose(grace_s)
    with contextlib.suppress(OSError):
        writer.write(frame(("closed", (_state(tee, metrics, received), report))))
        await writer.drain()
    writer.close()
