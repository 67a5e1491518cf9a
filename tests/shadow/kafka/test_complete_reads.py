"""Bounded reads are complete: batched producers, windows, groups, and a read that stops short.

The embedded broker (Tansu 0.6) reports as a partition's end offset the base offset of its last
batch plus one, so a batching producer's last batch lies mostly past the reported end; each test
here writes batches and checks that every record is read all the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from shadow.errors import ReplayError, UsageError
from shadow.kafka.broker import EmbeddedBroker
from shadow.kafka.source import KafkaSource
from shadow.replay.sources import open_source, read_summary
from shadow.trace.deadletter import DeadLetterFile
from shadow.trace.record import TraceRecord
from tests.shadow.kafka.test_source import FAST_GROUP, new_topic, produce
from tests.shadow.trace.samples import STEP, T0, ids, keyed, make_record, read_all

N = 200


async def produce_batched(
    broker: EmbeddedBroker, topic: str, records: Sequence[TraceRecord], *, linger_ms: int = 50
) -> None:
    """Produce ``records`` through one lingering aiokafka producer: a few large batches."""
    producer = AIOKafkaProducer(
        bootstrap_servers=broker.bootstrap, linger_ms=linger_ms, enable_idempotence=False
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in keyed(records)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def kafka_source(broker: EmbeddedBroker, topic: str, dead_letter: DeadLetterFile) -> KafkaSource:
    source = open_source(f"kafka://{broker.bootstrap}/{topic}", dead_letter=dead_letter)
    assert isinstance(source, KafkaSource)
    return source


async def test_a_batched_producer_is_read_to_its_last_record(
    broker: EmbeddedBroker, dead_letter: DeadLetterFile
) -> None:
    """200 records in lingering batches on 3 partitions: all read, and reported per partition."""
    topic = await new_topic(broker, partitions=3)
    await produce_batched(broker, topic, [make_record(i) for i in range(N)])
    source = kafka_source(broker, topic, dead_letter)
    items = await asyncio.wait_for(read_all(source), 20)

    assert sorted(ids(items)) == [f"t{i:04d}" for i in range(N)]
    report = read_summary(source)["reads"]
    assert isinstance(report, dict)
    assert report["status"] == "complete"
    assert report["records"] == N
    parts = report["partitions"]
    assert isinstance(parts, list)
    assert [p["partition"] for p in parts] == [0, 1, 2]
    for part in parts:
        mine = [item for item in items if item.position and item.position[1] == part["partition"]]
        offsets = [item.position[2] for item in mine if item.position]
        assert part["records"] == len(mine)
        assert (part["first_offset"], part["last_offset"]) == (min(offsets), max(offsets))
        assert part["position"] == max(offsets) + 1
        assert part["ended"] == "quiet"


async def test_records_produced_after_the_start_past_the_reported_end_are_left(
    broker: EmbeddedBroker, dead_letter: DeadLetterFile
) -> None:
    """Past the reported end, a record stamped after the snapshot ends the partition's read."""
    topic = await new_topic(broker, partitions=1)
    await produce_batched(broker, topic, [make_record(i) for i in range(50)])
    source = kafka_source(broker, topic, dead_letter)
    seen: list[str] = []
    try:
        async for item in source:
            if not seen:
                await produce_batched(broker, topic, [make_record(i) for i in range(50, 60)])
            seen.append(item.record.trace_id)
    finally:
        await source.aclose()
    assert seen == [f"t{i:04d}" for i in range(50)]
    (part,) = source.report.partitions.values()
    assert part.ended == "snapshot"
    assert part.last_offset == 49


async def test_a_time_window_over_batches_keeps_exactly_its_records(
    broker: EmbeddedBroker, dead_letter: DeadLetterFile
) -> None:
    """--from/--to on batched records: every record in the window, wherever its batch ends."""
    topic = await new_topic(broker, partitions=2)
    await produce_batched(broker, topic, [make_record(i) for i in range(N)])
    source = open_source(
        f"kafka://{broker.bootstrap}/{topic}",
        dead_letter=dead_letter,
        from_time_ns=T0 + 20 * STEP,
        to_time_ns=T0 + 190 * STEP,
    )
    items = await asyncio.wait_for(read_all(source), 20)
    assert sorted(ids(items)) == [f"t{i:04d}" for i in range(20, 190)]
    assert read_summary(source)["reads"]["status"] == "complete"  # type: ignore[index]


async def test_group_members_read_every_batched_record(
    broker: EmbeddedBroker, dead_letter: DeadLetterFile
) -> None:
    """Two members of one group split the partitions and together read all 200 records."""
    topic = await new_topic(broker, partitions=4)
    await produce_batched(broker, topic, [make_record(i) for i in range(N)])
    group = f"complete-{topic[-10:]}"
    sources = [
        open_source(
            f"kafka://{broker.bootstrap}/{topic}",
            dead_letter=dead_letter,
            group_id=group,
            consumer_options=FAST_GROUP,
        )
        for _ in range(2)
    ]
    shares = await asyncio.wait_for(asyncio.gather(*(read_all(s) for s in sources)), 20)
    assert sorted(ids(shares[0] + shares[1])) == [f"t{i:04d}" for i in range(N)]
    reports = [read_summary(s)["reads"] for s in sources]
    assert all(r["status"] == "complete" for r in reports)  # type: ignore[index]
    assert sum(r["records"] for r in reports) == N  # type: ignore[index]


async def test_a_partition_that_stops_short_of_its_end_fails_the_read(
    broker: EmbeddedBroker, dead_letter: DeadLetterFile
) -> None:
    """The topic is deleted mid-read: the read names the partition and raises, within the bound."""
    topic = await new_topic(broker, partitions=1)
    await produce(broker, topic, keyed([make_record(i) for i in range(60)]))  # one batch each
    source = open_source(
        f"kafka://{broker.bootstrap}/{topic}",
        dead_letter=dead_letter,
        consumer_options={"max_partition_fetch_bytes": 512, "fetch_max_bytes": 512},  # ~1 a fetch
    )
    assert isinstance(source, KafkaSource)
    source.read_stall_s = 1.5
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    seen = 0

    async def read() -> None:
        nonlocal seen
        async for _ in source:
            seen += 1
            if seen == 1:
                await admin.delete_topics([topic])

    try:
        with pytest.raises(ReplayError, match=rf"incomplete read of .*{topic}: partition 0: "):
            await asyncio.wait_for(read(), 20)
    finally:
        await admin.close()
        await source.aclose()
    assert seen < 60
    assert source.report.status == "incomplete"
    assert source.report.stalled[0].reported_end == 60


def test_the_quiet_period_must_be_shorter_than_the_stall_bound(
    broker: EmbeddedBroker, dead_letter: DeadLetterFile
) -> None:
    """read_quiet_s and read_stall_s are checked, and the error names the setting."""
    from shadow.kafka.address import KafkaAddress

    address = KafkaAddress.parse(f"kafka://{broker.bootstrap}/t")
    with pytest.raises(UsageError, match="read_quiet_s is 2 and read_stall_s 1") as caught:
        KafkaSource(address, dead_letter=dead_letter, read_quiet_s=2, read_stall_s=1)
    assert caught.value.setting == "read_quiet_s"
