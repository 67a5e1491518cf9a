"""The TraceSource protocol: where the replayer and the live mirror read TraceRecords from.

A source yields items (:class:`SourceItem`: a record and where it came from), commits positions
once their results are durable, and closes. The file sources (:mod:`shadow.trace.readers`) and
the Kafka source (:mod:`shadow.kafka.source`) implement it, and
:func:`shadow.replay.sources.open_source` picks one from a spec. The protocol lives here, beside
the record and below both, so that neither kind of source imports the other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from shadow.trace.record import TraceRecord

__all__ = ["Position", "SourceItem", "TraceSource"]

Position = tuple[str, int, int]
"""Where a Kafka record came from: ``(topic, partition, offset)``."""


@dataclass(frozen=True, slots=True)
class SourceItem:
    """One record and where it came from."""

    record: TraceRecord
    position: Position | None
    """``(topic, partition, offset)`` for Kafka; None for files."""


class TraceSource(Protocol):
    """Where TraceRecords come from; the swap point between files, Kafka and test fakes."""

    name: str

    def __aiter__(self) -> AsyncIterator[SourceItem]:
        """Yield the valid records; invalid ones go to the dead-letter file."""
        ...

    async def commit(self, positions: Sequence[Position]) -> None:
        """Mark these items finished; call only once their results are durable (files: no-op)."""
        ...

    async def aclose(self) -> None:
        """Release the file or consumer and end a running iteration; safe to call twice."""
        ...
