"""Does the broker still hold what it acknowledged? One check over the wire, for the ledger.

:func:`check_holding` asks, for the partitions that have unconfirmed records
(:class:`~shadow.kafka.ledger.Pending`):

1. **Metadata** for the topic, without creating it: a changed cluster id, a topic that is gone
   or a partition that is gone means the broker lost what it had (``lost``).
2. **End offsets** of those partitions: an end below the first unconfirmed offset means the
   log restarted (``lost``); every record below the end is held (``confirmed``).
3. **A read of the last record** where the end does not pass it: Apache Kafka's end offset
   passes every record acknowledged with ``acks=all``, but the embedded broker (Tansu 0.6)
   reports one past the *base* offset of a partition's last batch. The record at the last
   unconfirmed offset, with the key that was sent, confirms the partition up to it; another
   key there, or an offset out of range, is ``lost``; nothing read yet leaves it unconfirmed
   until the next check.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shadow.kafka.ledger import Pending

__all__ = ["Holding", "check_holding"]

_FETCH_BYTES = 1 << 20
_FETCH_WAIT_MS = 200  # only waited out when the broker has nothing at the offset
_OFFSET_OUT_OF_RANGE = 1


@dataclass(frozen=True, kw_only=True)
class Holding:
    """What one check found: why records were lost (empty: none were), and what is held."""

    cluster_id: str | None
    lost: str = ""
    confirmed: dict[int, int] = field(default_factory=dict)
    """Partition → end: every record of the partition below ``end`` is held."""


async def check_holding(
    client: Any, topic: str, pending: Mapping[int, Pending], *, cluster_id: str | None
) -> Holding:
    """Check ``pending`` on the broker through an aiokafka client (its errors propagate)."""
    from aiokafka.protocol.metadata import MetadataRequest

    node = client.get_random_node()
    if node is None:
        raise ConnectionError("no broker is known yet")
    metadata = (await client.send(node, MetadataRequest([topic], False))).to_object()
    now = metadata.get("cluster_id")
    if cluster_id and now and now != cluster_id:
        return Holding(cluster_id=now, lost=f"the cluster id changed from {cluster_id} to {now}")
    found = [t for t in metadata["topics"] if t["topic"] == topic and t["error_code"] == 0]
    if not found:
        return Holding(cluster_id=now, lost=f"topic {topic} is gone from the metadata")
    leaders = {p["partition"]: p["leader"] for p in found[0]["partitions"]}
    gone = sorted(set(pending) - set(leaders))
    if gone:
        return Holding(cluster_id=now, lost=f"partition {gone[0]} of {topic} is gone")
    ends = await _end_offsets(client, topic, {p: leaders[p] for p in pending})
    for partition, end in sorted(ends.items()):
        if end < pending[partition].first:
            return Holding(
                cluster_id=now,
                lost=f"partition {partition} of {topic} ends at offset {end}, below offset "
                f"{pending[partition].first} it acknowledged",
            )
    confirmed = dict(ends)
    unsure = sorted(p for p, end in ends.items() if end <= pending[p].last)
    verdicts = await asyncio.gather(
        *(_read_back(client, topic, p, leaders[p], pending[p]) for p in unsure)
    )
    for partition, verdict in zip(unsure, verdicts, strict=True):
        if verdict is False:
            return Holding(
                cluster_id=now,
                lost=f"partition {partition} of {topic} no longer holds offset "
                f"{pending[partition].last}",
            )
        if verdict:
            confirmed[partition] = pending[partition].last + 1
    return Holding(cluster_id=now, confirmed=confirmed)


async def _end_offsets(client: Any, topic: str, leaders: Mapping[int, int]) -> dict[int, int]:
    from aiokafka.protocol.offset import OffsetRequest

    by_node: dict[int, list[tuple[int, int]]] = {}
    for partition, node in leaders.items():
        by_node.setdefault(node, []).append((partition, -1))  # -1: the latest offset
    ends: dict[int, int] = {}
    for node, partitions in by_node.items():
        reply = (await client.send(node, OffsetRequest(-1, 0, [(topic, partitions)]))).to_object()
        for entry in reply["topics"]:
            for p in entry["partitions"]:
                if p["error_code"] == 0:
                    ends[p["partition"]] = p["offset"] if "offset" in p else p["offsets"][0]
    return ends


async def _read_back(
    client: Any, topic: str, partition: int, node: int, span: Pending
) -> bool | None:
    """True: the last record is there with its key; False: something else is; None: unknown."""
    from aiokafka.protocol.fetch import FetchRequest
    from aiokafka.record.memory_records import MemoryRecords

    request = FetchRequest(
        _FETCH_WAIT_MS, 1, _FETCH_BYTES, 0, [(topic, [(partition, span.last, _FETCH_BYTES)])]
    )
    reply = await client.send(node, request)
    for _, partitions in reply.topics:
        for number, error_code, _high, *rest in partitions:
            if number != partition:
                continue
            if error_code == _OFFSET_OUT_OF_RANGE:
                return False
            if error_code:
                return None
            records = MemoryRecords(rest[-1] or b"")
            while (batch := records.next_batch()) is not None:
                for record in batch:
                    if record.offset == span.last:
                        return bool(record.key == span.last_key)
                    if record.offset > span.last:
                        return False
    return None
