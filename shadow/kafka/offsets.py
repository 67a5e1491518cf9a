"""Which offset each partition may commit when records finish out of order.

The replayer and the mirror finish records in any order (many are in flight at once), but a
Kafka commit says "everything before this offset is done". :class:`OffsetTracker` advances a
partition only through a prefix of finished records, so a restart re-reads what was not done
(at-least-once; docs/architecture.md, "Kafka").
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field

from shadow.trace.source import Position

__all__ = ["OffsetTracker"]


@dataclass
class _Partition:
    pending: set[int] = field(default_factory=set)
    heap: list[int] = field(default_factory=list)  # pending offsets; finished ones popped lazily
    next_offset: int = 0  # one past the highest delivered offset
    committed: int = 0  # what was last committed (or the first delivered offset)


class OffsetTracker:
    """Which offset each partition may commit, given records finished out of order.

    Records are :meth:`delivered` in offset order per partition and :meth:`done` in any order.
    A partition's committable offset is that of its first unfinished record (or one past the
    last delivered one when all are finished): every record before it is finished. Offsets
    need not be contiguous (compacted topics, transaction markers), only increasing; an offset
    at or below one already delivered (the consumer went back, e.g. after a rebalance) starts
    that partition afresh.
    """

    def __init__(self) -> None:
        self._partitions: dict[tuple[str, int], _Partition] = {}

    def delivered(self, position: Position) -> None:
        """Note that the record at ``position`` was handed out and is not finished yet."""
        topic, partition, offset = position
        state = self._partitions.get((topic, partition))
        if state is None or offset < state.next_offset:
            state = self._partitions[topic, partition] = _Partition(committed=offset)
        state.pending.add(offset)
        heapq.heappush(state.heap, offset)
        state.next_offset = offset + 1

    def done(self, position: Position) -> None:
        """Note that the record at ``position`` is finished (unknown positions are ignored)."""
        topic, partition, offset = position
        state = self._partitions.get((topic, partition))
        if state is not None:
            state.pending.discard(offset)

    def committable(self) -> dict[tuple[str, int], int]:
        """The offset to commit per ``(topic, partition)``, for those that moved since."""
        result: dict[tuple[str, int], int] = {}
        for key, state in self._partitions.items():
            heap = state.heap
            while heap and heap[0] not in state.pending:
                heapq.heappop(heap)
            mark = heap[0] if heap else state.next_offset
            if mark > state.committed:
                result[key] = mark
        return result

    def committed(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Record that ``offsets`` (from :meth:`committable`) were committed."""
        for key, offset in offsets.items():
            state = self._partitions.get(key)
            if state is not None:
                state.committed = max(state.committed, offset)

    def forget(self, topic: str, partition: int) -> None:
        """Drop a partition's state (it was handed to another consumer)."""
        self._partitions.pop((topic, partition), None)
