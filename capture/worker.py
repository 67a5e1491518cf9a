"""Building records in a child process, so the live path's event loop only copies bytes.

The tee hands batches of raw :class:`~capture.exchange.Exchange` objects (flattened to plain
tuples) to one worker process over a Unix socket pair. There the
:class:`~capture.exchange.RecordBuilder` decodes, reassembles, parses usage, redacts,
extracts slices and encodes; only ``(key, value)`` bytes come back. The parent's side is
non-blocking I/O on the serving loop itself: no helper threads contend for the GIL, and the
loop's share is one ``pickle.dumps`` and one write per batch. The child is started from a
``forkserver`` (nothing of the serving process's threads is forked; a restart is cheap).

At most :data:`IN_FLIGHT` batches are outstanding (the tee awaits them in order), so the pipe
is bounded by the tee's queue. When the worker dies the batches it held are dropped and
counted (``records_dropped{reason="worker_died"}``) and the next batch starts a new worker; a
record that does not build is dropped as ``build_error``. Neither ever reaches a live request.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import multiprocessing
import pickle
import signal
import socket
import struct
from collections.abc import Sequence
from multiprocessing.process import BaseProcess
from typing import Any

from capture.exchange import Exchange, RecordBuilder
from capture.metrics import CaptureMetrics
from shadow.trace.record import encode

__all__ = ["IN_FLIGHT", "BuildWorker", "build_batch"]

log = logging.getLogger("shadow.capture")

IN_FLIGHT = 2
"""Batches handed to the worker and not yet answered."""
_LEN = struct.Struct(">I")
_Flat = tuple[Any, ...]
_Built = tuple[list[tuple[bytes, bytes]], int]


def build_batch(builder: RecordBuilder, batch: Sequence[Exchange]) -> _Built:
    """Build and encode each exchange: the ``(key, value)`` pairs, and how many failed."""
    out: list[tuple[bytes, bytes]] = []
    failed = 0
    for exchange in batch:
        try:
            record, key = builder.build(exchange)
            out.append((key, encode(record)))
        except Exception:  # a bug or a pathological body must not stop the tee
            log.exception("could not build a record for trace %s", exchange.trace_id)
            failed += 1
    return out, failed


def _flatten(ex: Exchange) -> _Flat:
    """The exchange as a plain tuple: pickled in C, several times faster than the dataclass."""
    return (
        ex.trace_id, ex.started_ns, ex.t0, ex.method, ex.path, ex.query, ex.request_headers,
        ex.cap, ex.request_body.buf, ex.request_body.size, ex.status, ex.response_headers,
        ex.response_body.buf, ex.response_body.size, ex.chunks, ex.latency_ms, ex.upstream_ms,
        ex.error,
    )  # fmt: skip


def _restore(flat: _Flat) -> Exchange:
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


def _read_exactly(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            return None
        got += k
    return bytes(buf)


def _serve(sock: socket.socket, builder: RecordBuilder) -> None:
    """The worker process: read a batch, build it, write the records back; EOF ends it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    with sock:
        while True:
            head = _read_exactly(sock, _LEN.size)
            if head is None:
                return
            payload = _read_exactly(sock, _LEN.unpack(head)[0])
            if payload is None:
                return
            flats = pickle.loads(payload)  # noqa: S301 (from the parent, over a socketpair)
            batch = [_restore(flat) for flat in flats]
            answer = pickle.dumps(build_batch(builder, batch), protocol=5)
            sock.sendall(_LEN.pack(len(answer)) + answer)


class _WorkerDied(Exception):
    pass


class _Child:
    """One running worker process and the parent's end of its socket."""

    def __init__(
        self, process: BaseProcess, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.process = process
        self.reader = reader
        self.writer = writer
        self.waiting: collections.deque[asyncio.Future[_Built]] = collections.deque()
        self.alive = True
        self.listener = asyncio.create_task(self._listen(), name="shadow-record-worker")

    async def _listen(self) -> None:
        try:
            while True:
                head = await self.reader.readexactly(_LEN.size)
                answer = await self.reader.readexactly(_LEN.unpack(head)[0])
                future = self.waiting.popleft()
                if not future.done():
                    future.set_result(pickle.loads(answer))  # noqa: S301 (our own child)
        except (asyncio.IncompleteReadError, OSError, IndexError):
            pass
        finally:
            self.alive = False
            while self.waiting:
                future = self.waiting.popleft()
                if not future.done():
                    future.set_exception(_WorkerDied())

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


class BuildWorker:
    """One child process that turns batches of exchanges into encoded records."""

    def __init__(self, builder: RecordBuilder, metrics: CaptureMetrics) -> None:
        self.builder = builder
        self.metrics = metrics
        self.restarts = 0
        self._child: _Child | None = None
        self._starting: asyncio.Lock | None = None

    async def _running(self) -> _Child:
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            child = self._child
            if child is not None and child.alive:
                return child
            if child is not None:
                self.restarts += 1
                log.warning("the record worker died; starting a new one")
                await child.close()
            self._child = child = await self._spawn()
            return child

    async def _spawn(self) -> _Child:
        ours, theirs = socket.socketpair()
        context = multiprocessing.get_context("forkserver")
        # the fork server imports the builder's modules once; each worker forked from it is
        # ready at once (only takes effect before the fork server's first start)
        context.set_forkserver_preload(["capture.worker"])
        process = context.Process(
            target=_serve, args=(theirs, self.builder), name="shadow-record-worker", daemon=True
        )
        try:
            await asyncio.to_thread(process.start)  # the first start launches the fork server
        finally:
            theirs.close()
        reader, writer = await asyncio.open_connection(sock=ours)
        return _Child(process, reader, writer)

    @property
    def alive(self) -> bool:
        """Whether a worker process is running (False before the first start and once dead)."""
        return self._child is not None and self._child.alive

    async def pid(self) -> int:
        """The worker's process id (starting it if needed)."""
        pid = (await self._running()).process.pid
        assert pid is not None
        return pid

    async def start(self) -> None:
        """Start the worker now rather than at the first batch (a failure is retried then)."""
        try:
            await self._running()
            await self.encode([])  # a round trip: the worker has loaded what it builds with
        except Exception as exc:
            log.warning("the record worker did not start (retried at the first batch): %s", exc)

    async def encode(self, batch: Sequence[Exchange]) -> list[tuple[bytes, bytes]]:
        """The batch's encoded records; what fails is dropped and counted, never raised."""
        try:
            payload = pickle.dumps([_flatten(ex) for ex in batch], protocol=5)
        except Exception:  # e.g. an exchange that does not pickle
            log.exception("could not hand %d exchanges to the record worker", len(batch))
            self.metrics.records_dropped.labels("build_error").inc(len(batch))
            return []
        future: asyncio.Future[_Built] = asyncio.get_running_loop().create_future()
        try:
            child = await self._running()
            child.waiting.append(future)
            child.writer.write(_LEN.pack(len(payload)) + payload)
            await child.writer.drain()
            out, failed = await future
        except (_WorkerDied, OSError) as exc:
            if not future.done():
                future.cancel()  # the listener skips it
            log.warning("record worker lost %d records: %r", len(batch), exc)
            self.metrics.records_dropped.labels("worker_died").inc(len(batch))
            return []
        if failed:
            self.metrics.records_dropped.labels("build_error").inc(failed)
        return out

    async def aclose(self) -> None:
        """Stop the worker (it exits at the end of its input); safe to call twice."""
        child, self._child = self._child, None
        if child is not None:
            await child.close()
