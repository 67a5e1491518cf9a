"""A results sink whose writes run in a child process, so they never hold the caller's GIL.

Building a batch's rows into DuckDB's appender holds the GIL for tens of milliseconds per
1,000 rows (measured at 4,000 sends/s: the replayer's loop stalled for up to 30 ms each batch,
and nearly every late send was one of them). :class:`ProcessSink` keeps the caller's part to
turning rows into plain tuples (:func:`~shadow.results.staging.result_tuples`, interruptible
Python) and one MessagePack encode; the child, started with ``spawn`` and at a lower CPU
priority (``nice``), decodes them and writes them with the real sink's
:meth:`~shadow.results.parquet.ParquetResultsWriter.write_staged`. A Parquet directory is
written by the child directly (under the parent writer's id); a DuckDB file cannot be opened
by two processes, so the child writes each batch as Parquet parts into a private staging
directory and the caller's store ingests them with one SQL statement, during which DuckDB
releases the GIL (:meth:`~shadow.results.store.ResultsStore.ingest_parts`).

:meth:`ProcessSink.write` returns when the batch is durable, as a sink's must; a child that
dies (or fails to write) makes it raise :class:`~shadow.errors.AnalysisError`, never hang.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

import msgspec

from shadow.closing import Closing
from shadow.errors import AnalysisError
from shadow.results.parquet import ParquetResultsWriter
from shadow.results.rows import ResultRow, TraceRow
from shadow.results.staging import Rows, replace_surrogates, result_tuples, trace_tuples
from shadow.results.store import ResultsStore

__all__ = ["ProcessSink"]

_NICE: Final = 10
"""How much lower the child's CPU priority is: on a shared core the sending loop goes first."""

_START_S: Final = 60.0
"""How long the child may take to start (import, open its writer) before it counts as failed."""

_ENCODER = msgspec.msgpack.Encoder()
_BATCH = msgspec.msgpack.Decoder(list[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]])


class ProcessSink(Closing):
    """Writes batches for ``store`` in a child process (see the module docstring).

    ``store`` stays the caller's: it keeps recording runs (``start_run``, ``finish_run``) and
    answering queries; only :meth:`write` goes through the child. Close this before ``store``.
    """

    def __init__(self, store: ResultsStore | ParquetResultsWriter) -> None:
        self.store = store
        self._staging: Path | None = None
        if isinstance(store, ParquetResultsWriter):
            directory, writer_id = str(store.directory), store.writer_id
        else:
            self._staging = Path(tempfile.mkdtemp(prefix="shadow-staging-"))
            directory, writer_id = str(self._staging), "staging"
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(
            target=_serve,
            args=(child_conn, directory, writer_id),
            name="shadow-results-writer",
            daemon=True,
        )
        self._process.start()
        child_conn.close()
        self._lock = threading.Lock()
        self._closed = False
        try:  # started before anything is due: its start-up must not compete with the sends
            if not self._conn.poll(_START_S) or self._conn.recv() != ("ready", []):
                raise EOFError
        except (EOFError, OSError):
            self._process.kill()
            if self._staging is not None:
                shutil.rmtree(self._staging, ignore_errors=True)
            raise self._died() from None

    def stage(self, results: Sequence[ResultRow], traces: Sequence[TraceRow] = ()) -> bytes:
        """The rows as one MessagePack piece for :meth:`write_staged` (a few µs per row)."""
        batch = (result_tuples(results), trace_tuples(traces))
        try:
            return _ENCODER.encode(batch)
        except UnicodeEncodeError:  # a lone surrogate: DuckDB would refuse it too
            return _ENCODER.encode(tuple(replace_surrogates(rows) for rows in batch))

    def write(self, results: Sequence[ResultRow], traces: Sequence[TraceRow] = ()) -> None:
        """Write the rows durably (in the child); raises if the child fails or is gone."""
        if results or traces:
            self.write_staged([self.stage(results, traces)])

    def write_staged(self, pieces: Sequence[bytes]) -> None:
        """Write the rows of :meth:`stage`'s pieces durably, in one batch (in the child)."""
        if not pieces:
            return
        payload = _ENCODER.encode([msgspec.Raw(piece) for piece in pieces])
        with self._lock:
            if self._closed:
                raise AnalysisError("the results writer process is closed")
            try:
                self._conn.send_bytes(payload)
                reply: tuple[str, list[str]] = self._conn.recv()
            except (EOFError, OSError):
                raise self._died() from None
        status, detail = reply
        if status != "ok":
            raise AnalysisError(detail[0])
        if self._staging is not None and detail:
            assert isinstance(self.store, ResultsStore)
            try:
                self.store.ingest_parts(detail)
            finally:
                for part in detail:
                    Path(part).unlink(missing_ok=True)

    def _died(self) -> AnalysisError:
        self._process.join(5)
        return AnalysisError(
            f"the results writer process exited (code {self._process.exitcode}) before its "
            "batch was written"
        )

    def close(self) -> None:
        """Stop the child (it has written every batch :meth:`write` returned for)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(OSError):
                self._conn.send_bytes(b"")
            self._process.join(30)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
            self._conn.close()
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)


def _serve(conn: Connection, directory: str, writer_id: str) -> None:
    """The child: decode each batch, write it, reply ("ok", new part paths) or ("error", text)."""
    with contextlib.suppress(OSError):
        os.nice(_NICE)
    sink = ParquetResultsWriter(directory, writer_id=writer_id)
    conn.send(("ready", []))
    try:
        while True:
            try:
                payload = conn.recv_bytes()
            except EOFError:
                return
            if not payload:
                return
            results: Rows = []
            traces: Rows = []
            for piece_results, piece_traces in _BATCH.decode(payload):
                results += piece_results
                traces += piece_traces
            try:
                parts = sink.write_staged(results, traces)
            except Exception as exc:
                conn.send(("error", [str(exc)]))
            else:
                conn.send(("ok", [str(part) for part in parts]))
    finally:
        sink.close()
