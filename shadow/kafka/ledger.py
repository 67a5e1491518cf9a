"""The delivery ledger: records a broker acknowledged, kept until a check shows it holds them.

An acknowledgement alone does not prove a record is held: the embedded in-memory broker,
restarted within the producer's timeouts, acknowledges produce requests for partitions it
no longer has. So :class:`~shadow.kafka.producer.KafkaSink` notes every acknowledged record
here with its partition and offset, and a later check of the partition's end offset (or a
read of the record itself) confirms it; confirmed records are forgotten.

- **Offsets went backwards.** An acknowledged offset at or below one acknowledged before on
  the same partition means the broker's log restarted: :meth:`DeliveryLedger.acknowledge`
  says so and the caller re-delivers everything unconfirmed (:meth:`DeliveryLedger.take_all`).
- **Bounded.** At most ``max_records`` records and ``max_bytes`` bytes of keys and values are
  kept; past either bound the oldest are forgotten unconfirmed and counted in ``unchecked``
  (they may well be held; a broker that loses them afterwards does so unseen).
- Plain data, no I/O and no locking: it is used from one event loop.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass

__all__ = ["Acked", "DeliveryLedger", "Pending"]


@dataclass(frozen=True, slots=True)
class Acked:
    """One acknowledged record: where the broker said it put it, and what to re-send."""

    sequence: int
    offset: int
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Pending:
    """What a check needs of one partition: the unconfirmed offsets and the newest key."""

    first: int
    last: int
    last_key: bytes


class DeliveryLedger:
    """Acknowledged, not yet confirmed records, per partition, oldest first."""

    def __init__(self, *, max_records: int = 100_000, max_bytes: int = 64 * 1024 * 1024) -> None:
        for name, value in (("max_records", max_records), ("max_bytes", max_bytes)):
            if value <= 0:
                raise ValueError(f"DeliveryLedger {name} has value {value}; it must be > 0")
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.unchecked = 0
        self.epoch = 0
        """Bumped whenever the ledger learns the broker lost records; stale checks compare it."""
        self._parts: dict[int, deque[Acked]] = {}
        self._high: dict[int, int] = {}
        self._records = 0
        self._bytes = 0
        self._sequence = itertools.count()

    @property
    def records(self) -> int:
        """Records acknowledged and not yet confirmed."""
        return self._records

    @property
    def size(self) -> int:
        """Key and value bytes of those records."""
        return self._bytes

    def went_backwards(self, partition: int, offset: int) -> bool:
        """Whether ``offset`` is at or below one acknowledged before on ``partition``."""
        high = self._high.get(partition)
        return high is not None and offset <= high

    def acknowledge(self, partition: int, offset: int, key: bytes, value: bytes) -> bool:
        """Note an acknowledged record; False (and nothing noted) when the offset went backwards."""
        if self.went_backwards(partition, offset):
            return False
        self._high[partition] = offset
        self._parts.setdefault(partition, deque()).append(
            Acked(next(self._sequence), offset, key, value)
        )
        self._records += 1
        self._bytes += len(key) + len(value)
        while self._records > self.max_records or self._bytes > self.max_bytes:
            self._evict_oldest()
        return True

    def pending(self) -> dict[int, Pending]:
        """Per partition with unconfirmed records: their first and last offsets, the last key."""
        return {
            p: Pending(q[0].offset, q[-1].offset, q[-1].key) for p, q in self._parts.items() if q
        }

    def confirm(self, partition: int, end: int) -> int:
        """Forget the records of ``partition`` with an offset below ``end``; return how many."""
        queue = self._parts.get(partition)
        done = 0
        while queue and queue[0].offset < end:
            self._forget(queue.popleft())
            done += 1
        if queue is not None and not queue:
            del self._parts[partition]
        return done

    def take_all(self) -> list[tuple[bytes, bytes]]:
        """Every unconfirmed record, oldest acknowledgement first, and start a new epoch.

        The broker lost them: the offsets noted so far mean nothing on the log it has now.
        """
        entries = sorted((e for q in self._parts.values() for e in q), key=lambda e: e.sequence)
        self._parts.clear()
        self._high.clear()
        self._records = self._bytes = 0
        self.epoch += 1
        return [(e.key, e.value) for e in entries]

    def _forget(self, entry: Acked) -> None:
        self._records -= 1
        self._bytes -= len(entry.key) + len(entry.value)

    def _evict_oldest(self) -> None:
        partition = min(
            (p for p, q in self._parts.items() if q), key=lambda p: self._parts[p][0].sequence
        )
        self._forget(self._parts[partition].popleft())
        if not self._parts[partition]:
            del self._parts[partition]
        self.unchecked += 1
