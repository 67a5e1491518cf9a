"""The Kafka source against the real embedded broker: bounded reads, windows, groups, follow."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shadow.errors import ReplayError, UsageError
from shadow.kafka.broker import EmbeddedBroker
from shadow.replay.sources import open_source
from shadow.trace.deadletter import DeadLetterFile
from shadow.trace.source import SourceItem, TraceSource
from tests.shadow.trace.samples import (
    STEP,
    T0,
    dead_letters,
    ids,
    keyed,
    make_record,
    read_all,
)

# Tansu forms a group only after about half the session timeout (5 s with aiokafka's default
# 10 s), and a member rejoining after a leave waits longer still. A 2 s session keeps a join near
# 1 s; at 1 s Tansu sometimes expires a member while it joins, so one member takes every partition.
# Real Kafka refuses sessions under group.min.session.timeout.ms (6 s by default).
FAST_GROUP = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 200}


async def new_topic(broker: EmbeddedBroker, partitions: int = 3) -> str:
    """Create a fresh topic with a unique name."""
    name = f"test.sources.{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()
    return name


async def produce(
    broker: EmbeddedBroker, topic: str, values: Sequence[tuple[bytes, bytes]]
) -> list[Any]:
    """Produce ``(key, value)`` pairs and return each one's record metadata."""
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        return [await producer.send_and_wait(topic, value, key=key) for key, value in values]
    finally:
        await producer.stop()


async def committed_and_end(
    broker: EmbeddedBroker, topic: str, group: str
) -> tuple[dict[int, int | None], dict[int, int]]:
    """The group's committed offset and the end offset per partition, without joining it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        ends = await consumer.end_offsets(tps)
        committed = {tp.partition: await consumer.committed(tp) for tp in tps}
    finally:
        await consumer.stop()
    return committed, {tp.partition: end for tp, end in ends.items()}


async def test_kafka_replay_reads_the_valid_records_then_stops(
    broker: EmbeddedBroker, dead_letter: DeadLetterFile
) -> None:
    """A bounded read yields exactly the valid records; garbage is dead-lettered by its offset."""
    topic = await new_topic(broker)
    records = [make_record(i) for i in range(30)]
    await produce(broker, topic, keyed(records[:15]))
    (garbage,) = await produce(broker, topic, [(b"junk", b"not a trace record")])
    await produce(broker, topic, keyed(records[15:]))

    source = open_source(f"kafka://{broker.bootstrap}/{topic}", dead_letter=dead_letter)
    items = await asyncio.wait_for(read_all(source), 10)

    assert sorted(ids(items)) == [r.trace_id for r in records]
    assert {item.record.trace_id: item.record for item in items} == {r.trace_id: r for r in records}
    positions = [item.position for item in items]
    assert all(p is not None and p[0] == topic for p in positions)
    assert len(set(positions)) == 30
    (entry,) = dead_letters(dead_letter.path)
    assert entry["source"] == f"{topic}/{garbage.partition}@{garbage.offset}"
    assert entry["raw"] == "not a trace record"
    await source.aclose()  # safe twice


async def test_kafka_replay_leaves_records_produced_after_the_start(
    broker: EmbeddedBroker, dead_letter: DeadLetterFile
) -> None:
    """The end offsets are a snapshot: records produced mid-run are left for the next run."""
    topic = await new_topic(broker, partitions=1)
    await produce(broker, topic, keyed([make_record(i) for i in range(5)]))
    source = open_source(f"kafka://{broker.bootstrap}/{topic}", dead_letter=dead_letter)
    seen: list[str] = []
    try:
        async for item in source:
            if not seen:
                await produce(broker, topic, keyed([make_record(i) for i in range(5, 8)]))
            seen.append(item.record.trace_id)
    finally:
        await source.aclose()
    assert seen == [f"t{i:04d}" for i in range(5)]


async def test_kafka_time_window_and_limit(
    broker: EmbeddedBroker, dead_letter: DeadLetterFile
) -> None:
    """from/to filter on captured_at across partitions; limit stops after that many records."""
    topic = await new_topic(broker)
    await produce(broker, topic, keyed([make_record(i) for i in range(20)]))
    spec = f"kafka://{broker.bootstrap}/{topic}"

    window = open_source(
        spec, dead_letter=dead_letter, from_time_ns=T0 + 5 * STEP, to_time_ns=T0 + 12 * STEP
    )
    assert sorted(ids(await read_all(window))) == [f"t{i:04d}" for i in range(5, 12)]
    limited = open_source(spec, dead_letter=dead_letter, limit=4)
    assert len(await read_all(limited)) == 4


async def test_kafka_group_commit_resumes_after_the_finished_prefix(
    broker: EmbeddedBroker, dead_letter: DeadLetterFile
) -> None:
    """A group re-read starts at each partition's first uncommitted record; all committed, none."""
    topic = await new_topic(broker, partitions=2)
    await produce(broker, topic, keyed([make_record(i) for i in range(20)]))
    spec = f"kafka://{broker.bootstrap}/{topic}"
    group = f"replayers-{uuid.uuid4().hex[:8]}"

    def grouped() -> TraceSource:
        return open_source(
            spec, dead_letter=dead_letter, group_id=group, consumer_options=FAST_GROUP
        )

    first = grouped()
    items = [item async for item in first]
    assert len(items) == 20
    by_partition: dict[int, list[SourceItem]] = {}
    for item in items:
        assert item.position is not None
        by_partition.setdefault(item.position[1], []).append(item)
    assert all(len(p) >= 5 for p in by_partition.values())
    # Finish the first 3 of each partition plus one record after a gap (out of order).
    finished = [p[i] for p in by_partition.values() for i in (4, 0, 2, 1)]
    await first.commit([item.position for item in finished if item.position is not None])
    await first.aclose()
    expected = sorted(item.record.trace_id for p in by_partition.values() for item in p[3:])

    second = grouped()
    again = [item async for item in second]
    assert sorted(ids(again)) == expected  # record 4 was finished, but 3 was not: both re-read
    await second.commit([item.position for item in again if item.position is not None])
    await second.aclose()

    # Everything is committed: the group's offsets are the partitions' ends, so a third member
    # would read nothing (asked without joining: a third join costs Tansu seconds).
    committed, ends = await committed_and_end(broker, topic, group)
    assert committed == ends


async def test_kafka_group_members_split_the_partitions(
    broker: EmbeddedBroker, dead_letter: DeadLetterFile
) -> None:
    """Two replayers in one group each read a share; together they read every record once."""
    topic = await new_topic(broker, partitions=4)
    await produce(broker, topic, keyed([make_record(i) for i in range(40)]))
    spec = f"kafka://{broker.bootstrap}/{topic}"
    group = f"split-{uuid.uuid4().hex[:8]}"
    sources = [
        open_source(spec, dead_letter=dead_letter, group_id=group, consumer_options=FAST_GROUP)
        for _ in range(2)
    ]
    shares = await asyncio.wait_for(asyncio.gather(*(read_all(s) for s in sources)), 10)

    assert all(shares), "each member should get at least one partition"
    partitions = [{item.position[1] for item in share if item.position} for share in shares]
    assert not partitions[0] & partitions[1]
    assert sorted(ids(shares[0] + shares[1])) == [f"t{i:04d}" for i in range(40)]


async def test_kafka_follow_keeps_reading_until_closed(
    broker: EmbeddedBroker, dead_letter: DeadLetterFile
) -> None:
    """follow=True yields records produced after it started, and aclose() ends the iteration."""
    topic = await new_topic(broker, partitions=1)
    await produce(broker, topic, keyed([make_record(0)]))
    source = open_source(
        f"kafka://{broker.bootstrap}/{topic}", dead_letter=dead_letter, follow=True
    )
    seen: list[str] = []

    async def consume() -> None:
        async for item in source:
            seen.append(item.record.trace_id)
            if len(seen) == 1:
                await produce(broker, topic, keyed([make_record(1), make_record(2)]))
            if len(seen) == 3:
                await source.aclose()

    await asyncio.wait_for(consume(), 10)
    assert seen == ["t0000", "t0001", "t0002"]


async def test_kafka_missing_topic_is_a_usage_error_for_a_bounded_read(
    broker: EmbeddedBroker, dead_letter: DeadLetterFile
) -> None:
    """Replaying a topic that does not exist names it and the broker."""
    source = open_source(f"kafka://{broker.bootstrap}/no.such.topic", dead_letter=dead_letter)
    with pytest.raises(
        UsageError, match=rf"topic no.such.topic does not exist .*{broker.bootstrap}"
    ):
        await read_all(source)


async def test_unreachable_bootstrap_is_a_replay_error_within_the_bound(
    dead_letter: DeadLetterFile,
) -> None:
    """A closed port gives a ReplayError naming the address and topic and the fix, quickly."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: nothing listens there
    source = open_source(f"kafka://127.0.0.1:{port}/shadow.traces", dead_letter=dead_letter)
    started = time.monotonic()
    with pytest.raises(
        ReplayError,
        match=rf"cannot reach Kafka at 127.0.0.1:{port} \(topic shadow.traces\): .*shadow broker",
    ):
        await read_all(source)
    assert time.monotonic() - started < 10
