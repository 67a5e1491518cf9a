"""Trace sources: JSONL, Parquet and Kafka (the real embedded broker), dead letters, commits."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import polars as pl
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shadow.errors import ReplayError, UsageError
from shadow.kafka.broker import EmbeddedBroker
from shadow.replay.sources import (
    OffsetTracker,
    SourceItem,
    TraceSource,
    load_sorted,
    open_source,
    write_parquet,
)
from shadow.trace.deadletter import DeadLetterFile
from shadow.trace.jsonl import write_jsonl
from shadow.trace.record import (
    HttpRequest,
    HttpResponse,
    Timing,
    TraceRecord,
    Usage,
    body_fields,
    encode,
)

T0 = 1_700_000_000_000_000_000  # captured_at of record 0, in epoch ns
STEP = 1_000_000_000  # one second between records

# Tansu forms a group only after about half the session timeout (5 s with aiokafka's default
# 10 s), and a member rejoining after a leave waits longer still. A 2 s session keeps a join near
# 1 s; at 1 s Tansu sometimes expires a member while it joins, so one member takes every partition.
# Real Kafka refuses sessions under group.min.session.timeout.ms (6 s by default).
FAST_GROUP = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 200}


def make_record(
    i: int, *, captured_at: int | None = None, body: bytes | None = None
) -> TraceRecord:
    """A small, complete record; ``i`` picks its id and (by default) its capture time."""
    return TraceRecord(
        trace_id=f"t{i:04d}",
        captured_at=T0 + i * STEP if captured_at is None else captured_at,
        service="code",
        sidecar="sc-1",
        request=HttpRequest(
            method="POST",
            path="/v1/chat/completions",
            query="a=1",
            headers={"content-type": "application/json", "x-seq": str(i)},
            **body_fields(body if body is not None else b'{"prompt": "hi"}'),
        ),
        response=HttpResponse(
            status=200, stream=True, chunk_offsets_ms=[1.5, 2.0], **body_fields(b"hello")
        ),
        timing=Timing(latency_ms=12.5, ttft_ms=3.0),
        usage=Usage(model="m-large", prompt_tokens=5, completion_tokens=7),
        slices={"tenant": f"ten-{i % 3}", "intent": "code"},
    )


def dead_letters(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [msgspec.json.decode(line) for line in path.read_bytes().splitlines()]


async def read_all(source: TraceSource) -> list[SourceItem]:
    try:
        return [item async for item in source]
    finally:
        await source.aclose()


def ids(items: Sequence[SourceItem]) -> list[str]:
    return [item.record.trace_id for item in items]


@pytest.fixture
def dead_letter(tmp_path: Path) -> Iterator[DeadLetterFile]:
    """A dead-letter file in the test's folder, closed afterwards."""
    with DeadLetterFile(tmp_path / "dead.jsonl") as dlf:
        yield dlf


# Files ------------------------------------------------------------------------------------------


async def test_jsonl_bad_line_is_dead_lettered_and_reading_goes_on(
    tmp_path: Path, dead_letter: DeadLetterFile
) -> None:
    """Bad lines in the middle go to the dead-letter file with file:line; the rest arrive."""
    path = tmp_path / "traces.jsonl"
    lines = [encode(make_record(i)) for i in range(5)]
    lines.insert(2, b'{"v": 1, "trace_id": "broken"')
    lines.insert(4, b"")  # blank lines are skipped, not dead-lettered
    zero_time = b'{"trace_id": "z", "captured_at": 0, "request": {"method": "GET", "path": "/"}}'
    lines.insert(5, zero_time)  # valid JSON that fails validation
    path.write_bytes(b"\n".join(lines) + b"\n")

    items = await read_all(open_source(str(path), dead_letter=dead_letter))

    assert [item.record for item in items] == [make_record(i) for i in range(5)]
    assert all(item.position is None for item in items)
    not_json, invalid = dead_letters(dead_letter.path)
    assert not_json["source"] == f"{path}:3"
    assert "not JSON" in not_json["reason"]
    assert not_json["raw"] == '{"v": 1, "trace_id": "broken"'
    assert invalid["source"] == f"{path}:6"
    assert "captured_at is 0" in invalid["reason"]


async def test_jsonl_larger_than_one_batch_arrives_whole_and_in_order(
    tmp_path: Path, dead_letter: DeadLetterFile
) -> None:
    """A file of several worker-thread batches yields every record in file order."""
    path = tmp_path / "big.jsonl"
    write_jsonl(path, (make_record(i) for i in range(9000)))
    items = await read_all(open_source(str(path), dead_letter=dead_letter))
    assert ids(items) == [f"t{i:04d}" for i in range(9000)]


async def test_parquet_nested_round_trip_keeps_every_field(
    tmp_path: Path, dead_letter: DeadLetterFile
) -> None:
    """write_parquet then open_source gives equal records, binary bodies and empty maps included."""
    records = [
        make_record(0),
        make_record(1, body=b"\xff\xfe\x00binary"),
        TraceRecord(
            trace_id="bare",
            captured_at=T0,
            request=HttpRequest(method="GET", path="/health"),
        ),
    ]
    assert records[1].request.body_b64 is not None
    path = tmp_path / "traces.parquet"

    assert write_parquet(path, records) == 3

    items = await read_all(open_source(str(path), dead_letter=dead_letter))
    assert [item.record for item in items] == records
    assert items[1].record.request.body_bytes() == b"\xff\xfe\x00binary"
    assert not dead_letter.path.exists()


async def test_parquet_record_column_of_json_text(
    tmp_path: Path, dead_letter: DeadLetterFile
) -> None:
    """A single `record` column of JSON text is decoded; a bad row is dead-lettered by row."""
    path = tmp_path / "records.parquet"
    texts = [encode(make_record(i)).decode() for i in range(3)]
    texts.insert(1, '{"v": 1}')
    pl.DataFrame({"record": texts}).write_parquet(path)

    items = await read_all(open_source(str(path), dead_letter=dead_letter))

    assert ids(items) == ["t0000", "t0001", "t0002"]
    (entry,) = dead_letters(dead_letter.path)
    assert entry["source"] == f"{path}:2"
    assert "missing required field" in entry["reason"]


async def test_parquet_from_another_tool_converts_and_bad_rows_are_dead_lettered(
    tmp_path: Path, dead_letter: DeadLetterFile
) -> None:
    """Struct-encoded maps, extra columns and nulls convert; a row failing validation does not."""
    path = tmp_path / "other.parquet"
    pl.DataFrame(
        [
            {
                "trace_id": "ok",
                "captured_at": T0,
                "request": {"method": "POST", "path": "/v1", "headers": {"a": "1", "b": None}},
                "slices": {"tenant": "x"},
                "extra_column": 42,
            },
            {
                "trace_id": "bad",
                "captured_at": T0,
                "request": {"method": "POST", "path": "no-slash", "headers": {"a": None, "b": "2"}},
                "slices": {"tenant": None},
                "extra_column": None,
            },
        ]
    ).write_parquet(path)

    items = await read_all(open_source(str(path), dead_letter=dead_letter))

    (item,) = items
    assert item.record.request.headers == {"a": "1"}
    assert item.record.slices == {"tenant": "x"}
    (entry,) = dead_letters(dead_letter.path)
    assert entry["source"] == f"{path}:2"
    assert "must start with '/'" in entry["reason"]
    assert '"trace_id":"bad"' in entry["raw"]


@pytest.mark.parametrize(
    "spec",
    [
        "traces.csv",
        "traces",
        "http://127.0.0.1:9092/topic",
        "kafka://127.0.0.1/topic",
        "kafka://127.0.0.1:9092/",
        "kafka://127.0.0.1:9092/bad topic",
        "kafka://127.0.0.1:99999/topic",
    ],
)
def test_unknown_spec_is_a_usage_error_naming_it_and_the_forms(
    spec: str, dead_letter: DeadLetterFile
) -> None:
    """Anything but .jsonl, .parquet or kafka://HOST:PORT/TOPIC is one line: what and the forms."""
    with pytest.raises(UsageError, match=r"kafka://HOST:PORT\[,HOST:PORT\]/TOPIC") as info:
        open_source(spec, dead_letter=dead_letter)
    assert repr(spec) in str(info.value)
    assert "\n" not in str(info.value)


async def test_a_file_that_is_not_parquet_is_a_usage_error(
    tmp_path: Path, dead_letter: DeadLetterFile
) -> None:
    """A .parquet file polars cannot read gives one line naming the file."""
    path = tmp_path / "fake.parquet"
    path.write_text("not parquet at all\n")
    with pytest.raises(UsageError, match=rf"cannot read Parquet file {path}: ") as info:
        await read_all(open_source(str(path), dead_letter=dead_letter))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["missing.jsonl", "missing.parquet"])
def test_missing_file_is_a_usage_error_naming_it(
    name: str, tmp_path: Path, dead_letter: DeadLetterFile
) -> None:
    """A trace file that does not exist is named in the error."""
    with pytest.raises(UsageError, match=rf"{tmp_path / name} does not exist"):
        open_source(str(tmp_path / name), dead_letter=dead_letter)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
async def test_time_window_and_limit_filter_file_records(
    suffix: str, tmp_path: Path, dead_letter: DeadLetterFile
) -> None:
    """from is inclusive, to exclusive, and limit counts only records inside the window."""
    path = tmp_path / f"traces{suffix}"
    records = [make_record(i) for i in range(10)]
    if suffix == ".jsonl":
        write_jsonl(path, records)
    else:
        write_parquet(path, records)

    def window(**kw: Any) -> TraceSource:
        return open_source(str(path), dead_letter=dead_letter, **kw)

    inside = window(from_time_ns=T0 + 3 * STEP, to_time_ns=T0 + 7 * STEP)
    assert ids(await read_all(inside)) == ["t0003", "t0004", "t0005", "t0006"]
    assert ids(await read_all(window(limit=2))) == ["t0000", "t0001"]
    assert ids(await read_all(window(from_time_ns=T0 + 8 * STEP, limit=5))) == ["t0008", "t0009"]


def test_bad_limit_and_empty_window_are_usage_errors(dead_letter: DeadLetterFile) -> None:
    """limit < 1 and a window whose start is not before its end name the values."""
    with pytest.raises(UsageError, match="limit is 0"):
        open_source("x.jsonl", dead_letter=dead_letter, limit=0)
    with pytest.raises(UsageError, match=r"\[5, 5\) is empty"):
        open_source("x.jsonl", dead_letter=dead_letter, from_time_ns=5, to_time_ns=5)


# Ordering and offsets ---------------------------------------------------------------------------


class ListSource:
    """An in-memory TraceSource (the real part adds nothing to sorting)."""

    name = "list"

    def __init__(self, items: Sequence[SourceItem]) -> None:
        self.items = list(items)

    async def __aiter__(self) -> AsyncIterator[SourceItem]:
        for item in self.items:
            yield item

    async def commit(self, positions: Sequence[tuple[str, int, int]]) -> None:
        pass

    async def aclose(self) -> None:
        pass


async def test_load_sorted_orders_by_captured_at_keeping_ties_in_source_order() -> None:
    """Items come back sorted by captured_at; equal times keep their arrival order."""
    times = [5, 1, 3, 1, 4, 5, 2]
    items = [
        SourceItem(make_record(i, captured_at=T0 + t), ("t", i % 2, i)) for i, t in enumerate(times)
    ]
    ordered = await load_sorted(ListSource(items))
    assert ids(ordered) == ["t0001", "t0003", "t0006", "t0002", "t0004", "t0000", "t0005"]
    earliest = await load_sorted(ListSource(items), limit=4)
    assert ids(earliest) == ["t0001", "t0003", "t0006", "t0002"]


def test_offset_tracker_commits_only_through_a_finished_prefix() -> None:
    """Out-of-order completions advance a partition only up to its first unfinished record."""
    tracker = OffsetTracker()
    for offset in range(6):
        tracker.delivered(("t", 0, offset))
    for offset in (10, 12, 15):  # a compacted partition: offsets with gaps
        tracker.delivered(("t", 1, offset))
    assert tracker.committable() == {}

    tracker.done(("t", 0, 2))
    tracker.done(("t", 0, 3))
    assert tracker.committable() == {}  # offset 0 is still running

    tracker.done(("t", 0, 0))
    assert tracker.committable() == {("t", 0): 1}
    tracker.committed({("t", 0): 1})
    assert tracker.committable() == {}

    tracker.done(("t", 0, 1))
    tracker.done(("t", 0, 5))
    assert tracker.committable() == {("t", 0): 4}  # 4 unfinished; 5 must wait for it

    tracker.done(("t", 1, 12))
    tracker.done(("t", 1, 10))
    assert tracker.committable() == {("t", 0): 4, ("t", 1): 15}

    tracker.done(("t", 0, 4))
    tracker.done(("t", 1, 15))
    tracker.done(("t", 9, 0))  # never delivered: ignored
    assert tracker.committable() == {("t", 0): 6, ("t", 1): 16}

    tracker.forget("t", 1)
    assert tracker.committable() == {("t", 0): 6}


def test_offset_tracker_starts_a_partition_afresh_when_offsets_go_back() -> None:
    """A re-delivery from an earlier offset (after a rebalance) restarts that partition's count."""
    tracker = OffsetTracker()
    for offset in (5, 6, 7):
        tracker.delivered(("t", 0, offset))
    tracker.done(("t", 0, 5))
    assert tracker.committable() == {("t", 0): 6}
    tracker.delivered(("t", 0, 6))  # read again from the committed-but-not-yet offset 6
    assert tracker.committable() == {}
    tracker.done(("t", 0, 6))
    assert tracker.committable() == {("t", 0): 7}


# Kafka (the embedded broker) --------------------------------------------------------------------


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


def keyed(records: Sequence[TraceRecord]) -> list[tuple[bytes, bytes]]:
    return [(r.trace_id.encode(), encode(r)) for r in records]


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
