"""Read and write TraceRecords as JSONL files (one record per line)."""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator
from pathlib import Path

from shadow.errors import UsageError
from shadow.files import atomic_write
from shadow.trace.deadletter import DeadLetterFile
from shadow.trace.decoding import Row, RowReader, Window, decode_row
from shadow.trace.record import TraceRecord, encode

__all__ = ["jsonl_rows", "read_jsonl", "write_jsonl"]


def read_jsonl(
    path: str | Path, dead_letter: DeadLetterFile | None = None
) -> Iterator[TraceRecord]:
    """Yield the records of a JSONL trace file in file order; blank lines are skipped.

    A line that fails validation goes to ``dead_letter`` with its reason and the reading goes
    on; without a dead-letter file it raises :class:`TraceError` naming the file and line.
    """
    return RowReader(dead_letter=dead_letter, window=Window()).records(jsonl_rows(path))


def jsonl_rows(path: str | Path) -> Generator[Row]:
    """Decode each non-blank line of a JSONL file into a :class:`Row` with origin ``file:line``.

    Raises:
        UsageError: the file cannot be opened (on the first ``next``).
    """
    path = Path(path)
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise UsageError(f"cannot read trace file {path}: {exc.strerror}") from None
    with fh:
        for lineno, line in enumerate(fh, start=1):
            if line.strip():
                yield decode_row(f"{path}:{lineno}", line, raw=line.rstrip(b"\r\n"))


def write_jsonl(path: str | Path, records: Iterable[TraceRecord]) -> int:
    """Write records to ``path`` atomically (all or nothing) and return how many were written.

    The records are written to a temporary file beside ``path``, synced and renamed into place
    only when every record is written (:func:`shadow.files.atomic_write`), so an error half-way
    leaves no half-written file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with atomic_write(path, buffering=1 << 20) as fh:
        for record in records:
            fh.write(encode(record))
            fh.write(b"\n")
            count += 1
    return count
