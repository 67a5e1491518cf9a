"""The one decoding loop every trace reader shares: rows in, records out, failures set aside.

A reader (a JSONL file, a Parquet file, a Kafka topic) turns what it holds into rows
(:class:`Row`): where the row came from, its raw bytes, and the decoded record or the reason it
is not one. :class:`RowReader` takes it from there in the same way for all of them: a failed
row goes to the dead-letter file with its origin and reason (or raises, for a reader without
one), a record outside the :class:`Window` is skipped, and reading stops once the window's
limit is reached.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from shadow.errors import TraceError, UsageError
from shadow.trace.deadletter import DeadLetterFile
from shadow.trace.record import TraceRecord, decode

__all__ = ["Row", "RowReader", "Window", "decode_row"]


class Row(NamedTuple):
    """One input of a reader, decoded (or not)."""

    origin: str
    """Where it came from, for the dead-letter file: ``file:line``, ``file:row``,
    ``topic/partition@offset``."""
    raw: bytes
    """The bytes as read, kept in the dead-letter file so nothing is lost."""
    result: TraceRecord | str
    """The record, or why the input is not one."""


def decode_row(origin: str, data: bytes | str, raw: bytes | None = None) -> Row:
    """Decode JSON ``data`` into a row; ``raw`` is what to keep if it fails (default ``data``)."""
    if raw is None:
        raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        return Row(origin, raw, decode(data))
    except TraceError as exc:
        return Row(origin, raw, str(exc))


@dataclass(frozen=True, slots=True)
class Window:
    """The records a read keeps: ``from_time_ns <= captured_at < to_time_ns``, at most ``limit``.

    Raises:
        UsageError: ``limit`` is below 1, or the time range is empty.
    """

    from_time_ns: int | None = None
    to_time_ns: int | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"limit is {self.limit}; it must be >= 1 (or not given, for no limit)")
        start, end = self.from_time_ns, self.to_time_ns
        if start is not None and end is not None and start >= end:
            raise UsageError(f"the time range [{start}, {end}) is empty; from must be before to")

    def holds(self, record: TraceRecord) -> bool:
        """Whether ``record`` was captured inside the time range."""
        at = record.captured_at
        if self.from_time_ns is not None and at < self.from_time_ns:
            return False
        return self.to_time_ns is None or at < self.to_time_ns


class RowReader:
    """Turns rows into the records a read keeps; one per read, since it counts toward the limit.

    Args:
        dead_letter: Where failed rows go. Without one, the first failed row raises
            :class:`TraceError` naming its origin.
        window: The time range and limit to apply.
    """

    def __init__(self, *, dead_letter: DeadLetterFile | None, window: Window) -> None:
        self.dead_letter = dead_letter
        self.window = window
        self.count = 0  # records kept so far

    @property
    def full(self) -> bool:
        """Whether the limit is reached: the read should stop."""
        return self.window.limit is not None and self.count >= self.window.limit

    def accept(self, row: Row) -> TraceRecord | None:
        """The row's record if the read keeps it; None when it was dead-lettered or skipped."""
        origin, raw, result = row
        if isinstance(result, str):
            if self.dead_letter is None:
                raise TraceError(f"{origin}: {result}")
            self.dead_letter.write(raw, reason=result, source=origin)
            return None
        if not self.window.holds(result):
            return None
        self.count += 1
        return result

    def records(self, rows: Iterable[Row]) -> Iterator[TraceRecord]:
        """The kept records of ``rows``, in order, stopping once the limit is reached."""
        remaining = iter(rows)
        while not self.full:  # checked before taking a row: nothing is read past the limit
            row = next(remaining, None)
            if row is None:
                return
            record = self.accept(row)
            if record is not None:
                yield record
