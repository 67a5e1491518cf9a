"""When a bounded Kafka read is complete, and what it read from each partition.

A broker's reported end offset is not trusted alone: the embedded broker (Tansu 0.6) reports
the base offset of a partition's last batch plus one, so a read that stops there skips the rest
of that batch. A bounded read (:class:`~shadow.kafka.source.KafkaSource` with ``follow=False``)
therefore reads each partition to the end offset reported when it started and then on, and a
partition is done only when

- it reached the reported end and then returned nothing for :data:`READ_QUIET_S` (``quiet``), or
- past the reported end it met a record stamped at or after the moment the end offsets were
  taken (``snapshot``): that record and the later ones were produced after the read started
  and are the next run's (so a read of a busy topic still ends).

A partition still short of its reported end that returns nothing for :data:`READ_STALL_S`
(``stalled``: a fetch keeps failing, or the records are gone) makes the read incomplete: the
source raises :class:`~shadow.errors.ReplayError` naming it, and nothing is replayed. A read
stopped by its ``limit`` is ``limit``. :meth:`ReadReport.as_dict` is what ``shadow replay``
prints in its summary (``reads``); docs/architecture.md ("Kafka") defines each figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["READ_QUIET_S", "READ_STALL_S", "PartitionRead", "ReadReport", "ReadStatus"]

READ_QUIET_S = 0.5
"""Seconds a partition at or past its reported end must return nothing before it is done."""

READ_STALL_S = 10.0
"""Seconds a partition short of its reported end may return nothing before the read fails."""

Ended = Literal["quiet", "snapshot", "stalled"]
ReadStatus = Literal["complete", "incomplete", "limit", "reading"]


@dataclass
class PartitionRead:
    """What one partition returned: offsets, a count, and how its read ended."""

    partition: int
    reported_end: int
    """The end offset the broker reported when the read started."""
    active_at: float
    """Monotonic time the partition last returned a record or moved (or was assigned)."""
    first_offset: int | None = None
    last_offset: int | None = None
    records: int = 0
    """Records fetched: replayed, dead-lettered or outside the time window alike."""
    position: int | None = None
    ended: Ended | None = None

    def read(self, offset: int, now: float) -> None:
        """Note that the record at ``offset`` was fetched."""
        if self.first_offset is None:
            self.first_offset = offset
        self.last_offset = offset
        self.records += 1
        self.active_at = now

    def settle(self, position: int, now: float, *, quiet_s: float, stall_s: float) -> bool:
        """Whether the partition is done, given its consumer position (see the module)."""
        if self.ended is not None:
            return True
        if position != self.position:  # moved without records (control batches, compaction)
            self.position = position
            self.active_at = now
        idle = now - self.active_at
        if position >= self.reported_end and idle >= quiet_s:
            self.ended = "quiet"
        elif position < self.reported_end and idle >= stall_s:
            self.ended = "stalled"
        return self.ended is not None

    def as_dict(self) -> dict[str, object]:
        return {
            "partition": self.partition,
            "first_offset": self.first_offset,
            "last_offset": self.last_offset,
            "records": self.records,
            "reported_end": self.reported_end,
            "position": self.position,
            "ended": self.ended,
        }

    def describe(self) -> str:
        """One phrase: ``partition 2: offsets 0..40 (41 records), reported end 100``."""
        read = (
            "nothing read"
            if self.first_offset is None
            else f"offsets {self.first_offset}..{self.last_offset} ({self.records:,} records)"
        )
        return f"partition {self.partition}: {read}, reported end {self.reported_end}"


@dataclass
class ReadReport:
    """Per partition, what a bounded read of ``source`` read, and whether it is complete."""

    source: str
    snapshot_ms: int = 0
    """Wall-clock time (epoch ms) the end offsets were taken; later records are the next run's."""
    partitions: dict[int, PartitionRead] = field(default_factory=dict)
    limited: bool = False
    """The read stopped at its record limit."""

    def expect(self, partition: int, reported_end: int, now: float) -> None:
        """Start (or restart, after a rebalance) the account of ``partition``."""
        self.partitions[partition] = PartitionRead(partition, reported_end, active_at=now)

    def forget(self, partition: int) -> None:
        """Drop a partition handed to another consumer (its new owner reports it)."""
        self.partitions.pop(partition, None)

    @property
    def stalled(self) -> list[PartitionRead]:
        return [p for p in self.partitions.values() if p.ended == "stalled"]

    @property
    def status(self) -> ReadStatus:
        if self.stalled:
            return "incomplete"
        if self.limited:
            return "limit"
        if all(p.ended is not None for p in self.partitions.values()):
            return "complete"
        return "reading"

    def failure(self, stall_s: float) -> str:
        """The one line that says which partitions could not be read to their end."""
        parts = "; ".join(f"{p.describe()}, stopped at offset {p.position}" for p in self.stalled)
        return (
            f"incomplete read of {self.source}: {parts}; nothing was fetched for {stall_s:g} s "
            "(read_stall_s): is the broker healthy, were the records deleted?"
        )

    def as_dict(self) -> dict[str, object]:
        parts = [self.partitions[p].as_dict() for p in sorted(self.partitions)]
        return {
            "source": self.source,
            "status": self.status,
            "records": sum(p.records for p in self.partitions.values()),
            "partitions": parts,
        }
