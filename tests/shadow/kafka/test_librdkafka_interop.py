"""A second client: librdkafka (confluent-kafka) producing to shadow's reads, and reading its sink.

Every codec, record headers, null keys and lingering batches from librdkafka reach a bounded
read whole; what shadow's own producer (:class:`KafkaSink`) writes, librdkafka reads back.
librdkafka 2.0 (Debian 12) cannot talk to the embedded broker; the wheel's bundled 2.x can
(docs/architecture.md, "Kafka").
"""

from __future__ import annotations

import asyncio
import time

import confluent_kafka
import pytest

from shadow.config import KafkaConfig
from shadow.kafka.broker import EmbeddedBroker
from shadow.kafka.producer import KafkaSink
from shadow.kafka.source import KafkaSource
from shadow.replay.sources import open_source
from shadow.trace.deadletter import DeadLetterFile
from shadow.trace.record import decode, encode
from tests.shadow.kafka.test_source import new_topic
from tests.shadow.trace.samples import dead_letters, ids, keyed, make_record, read_all

N = 150
QUIET = {"log_level": 3}  # librdkafka's own log: errors only (a stopped broker is not one here)


def produce_with_librdkafka(bootstrap: str, topic: str, codec: str) -> None:
    """N records from one lingering librdkafka producer: headers on all, no key on every 3rd."""
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": bootstrap,
            "compression.type": codec,
            "linger.ms": 20,
            "enable.idempotence": False,
            **QUIET,
        }
    )
    failed: list[object] = []

    def delivered(error: object, _message: object) -> None:
        if error is not None:
            failed.append(error)

    for i in range(N):
        producer.produce(
            topic,
            encode(make_record(i)),
            key=None if i % 3 == 0 else f"t{i:04d}".encode(),
            headers=[("x-seq", str(i).encode()), ("x-empty", b"")],
            on_delivery=delivered,
        )
    assert producer.flush(15) == 0, "librdkafka did not deliver every record in time"
    assert not failed


def test_the_bundled_librdkafka_is_new_enough() -> None:
    """The 2.0 line fails ApiVersionRequest against the embedded broker; the suite needs newer."""
    version, _ = confluent_kafka.libversion()
    major, minor = (int(part) for part in version.split(".")[:2])
    assert (major, minor) > (2, 0), f"librdkafka {version}: use confluent-kafka's bundled 2.x"


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
async def test_a_bounded_read_gets_every_record_librdkafka_produced(
    broker: EmbeddedBroker, dead_letter: DeadLetterFile, codec: str
) -> None:
    """Each codec, headers, null keys, batches: all N records, none dead-lettered."""
    topic = await new_topic(broker, partitions=3)
    await asyncio.to_thread(produce_with_librdkafka, broker.bootstrap, topic, codec)
    source = open_source(f"kafka://{broker.bootstrap}/{topic}", dead_letter=dead_letter)
    assert isinstance(source, KafkaSource)
    items = await asyncio.wait_for(read_all(source), 20)

    assert sorted(ids(items)) == [f"t{i:04d}" for i in range(N)]
    assert dead_letters(dead_letter.path) == []
    assert source.report.status == "complete"
    assert sum(p.records for p in source.report.partitions.values()) == N


def consume_with_librdkafka(
    bootstrap: str, topic: str, partitions: int, want: int
) -> list[tuple[bytes, bytes]]:
    """Read ``topic`` from the start with a librdkafka consumer until ``want`` records came.

    The partitions are assigned, not subscribed: a group join costs Tansu seconds.
    """
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"librdkafka-{topic}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **QUIET,
        }
    )
    got: list[tuple[bytes, bytes]] = []
    try:
        consumer.assign(
            [
                confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
                for p in range(partitions)
            ]
        )
        deadline = time.monotonic() + 30
        while len(got) < want and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            key, value = message.key(), message.value()
            assert isinstance(key, bytes)
            assert isinstance(value, bytes)
            got.append((key, value))
    finally:
        consumer.close()
    return got


async def test_librdkafka_reads_back_what_the_sink_wrote(broker: EmbeddedBroker) -> None:
    """KafkaSink's zstd batches (capture's producer) decode in librdkafka, keys and values."""
    topic = await new_topic(broker, partitions=2)
    records = [make_record(i) for i in range(120)]
    sink = KafkaSink(
        KafkaConfig(bootstrap=broker.bootstrap, topic=topic, compression="zstd", linger_ms=20)
    )
    try:
        for start in range(0, len(records), 40):
            await sink.send_batch(keyed(records[start : start + 40]))
    finally:
        await sink.aclose()

    got = await asyncio.to_thread(consume_with_librdkafka, broker.bootstrap, topic, 2, len(records))
    assert sorted(got) == sorted(keyed(records))
    assert {decode(value).trace_id for _, value in got} == {r.trace_id for r in records}
