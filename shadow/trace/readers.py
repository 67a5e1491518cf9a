"""The file sources: JSONL and Parquet trace files read without blocking the event loop.

Rows are decoded in a worker thread in batches (:func:`~shadow.trace.jsonl.jsonl_rows`,
:func:`~shadow.trace.parquet.parquet_rows`), so a 100 MB file never blocks the event loop; the
batches then go through the one decoding loop (:class:`~shadow.trace.decoding.RowReader`) on
the loop's side, which dead-letters failed rows and applies the time window and limit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Generator, Sequence
from itertools import islice
from pathlib import Path

from shadow.closing import AsyncClosing
from shadow.trace.deadletter import DeadLetterFile
from shadow.trace.decoding import Row, RowReader, Window
from shadow.trace.jsonl import jsonl_rows
from shadow.trace.parquet import parquet_rows
from shadow.trace.source import Position, SourceItem

__all__ = ["JsonlSource", "ParquetSource"]

_BATCH_ROWS = 4096  # rows decoded per worker-thread hop: large enough to amortise the hop


class _FileSource(AsyncClosing):
    """Shared iteration of the file sources: batches of rows come from a worker thread."""

    def __init__(self, path: Path, *, dead_letter: DeadLetterFile, window: Window) -> None:
        self.path = path
        self.name = str(path)
        self.dead_letter = dead_letter
        self.window = window
        self._open: list[Generator[list[Row]]] = []

    async def __aiter__(self) -> AsyncIterator[SourceItem]:
        batches = _batched(self._rows())
        self._open.append(batches)
        reader = RowReader(dead_letter=self.dead_letter, window=self.window)
        try:
            no_more: list[Row] = []
            while batch := await asyncio.to_thread(next, batches, no_more):
                for record in reader.records(batch):
                    yield SourceItem(record, None)
                if reader.full:
                    return
        finally:
            if batches in self._open:
                self._open.remove(batches)
            await asyncio.to_thread(batches.close)  # closing a closed generator is a no-op

    def _rows(self) -> Generator[Row]:
        raise NotImplementedError

    async def commit(self, positions: Sequence[Position]) -> None:
        """Nothing to commit for a file."""

    async def aclose(self) -> None:
        """Close files an unfinished iteration left open; safe to call twice."""
        while self._open:
            batches = self._open.pop()
            # A batch being read in a worker thread cannot be closed from here; the iteration
            # closes its file when that batch returns.
            with contextlib.suppress(ValueError):
                await asyncio.to_thread(batches.close)


def _batched(rows: Generator[Row]) -> Generator[list[Row]]:
    """Lists of up to ``_BATCH_ROWS`` rows; closing it closes ``rows`` (and so the file)."""
    with contextlib.closing(rows):
        while batch := list(islice(rows, _BATCH_ROWS)):
            yield batch


class JsonlSource(_FileSource):
    """Records from a JSONL file, in file order; blank lines are skipped."""

    def _rows(self) -> Generator[Row]:
        return jsonl_rows(self.path)


class ParquetSource(_FileSource):
    """Records from a Parquet file, in row order; dead letters name the 1-based row.

    The file is loaded into memory (columnar, about its uncompressed size) by a worker thread;
    rows are converted to records batch by batch.
    """

    def _rows(self) -> Generator[Row]:
        return parquet_rows(self.path)
