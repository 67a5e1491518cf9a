"""Read and write TraceRecords as JSONL files (one record per line)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

from shadow.errors import TraceError, UsageError
from shadow.trace.deadletter import DeadLetterFile
from shadow.trace.record import TraceRecord, decode, encode

__all__ = ["read_jsonl", "write_jsonl"]


def read_jsonl(
    path: str | Path, dead_letter: DeadLetterFile | None = None
) -> Iterator[TraceRecord]:
    """Yield the records of a JSONL trace file in file order; blank lines are skipped.

    A line that fails validation goes to ``dead_letter`` with its reason and the reading goes
    on; without a dead-letter file it raises :class:`TraceError` naming the file and line.
    """
    path = Path(path)
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise UsageError(f"cannot read trace file {path}: {exc.strerror}") from None
    with fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield decode(line)
            except TraceError as exc:
                if dead_letter is None:
                    raise TraceError(f"{path}:{lineno}: {exc}") from None
                dead_letter.write(line.rstrip(b"\r\n"), reason=str(exc), source=f"{path}:{lineno}")


def write_jsonl(path: str | Path, records: Iterable[TraceRecord]) -> int:
    """Write records to ``path`` atomically (all or nothing) and return how many were written.

    The records are written to a temporary file beside ``path`` and renamed into place only when
    every record is written, so an error half-way leaves no half-written file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A plain O_EXCL create (not mkstemp) so the file gets the usual umask-based mode, not 0600.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    count = 0
    try:
        with tmp.open("xb", buffering=1 << 20) as fh:
            for record in records:
                fh.write(encode(record))
                fh.write(b"\n")
                count += 1
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count
