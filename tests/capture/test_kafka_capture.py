"""Capture to the real embedded Kafka broker, including a broker outage mid-traffic."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer

from shadow.config import KafkaConfig
from shadow.kafka.broker import EmbeddedBroker
from shadow.kafka.producer import KafkaSink
from shadow.serving import BackgroundServer
from shadow.trace.jsonl import read_jsonl
from shadow.trace.record import TraceRecord, decode
from tests.capture.conftest import Recorder, RunningSidecar

MakeUpstream = Callable[..., tuple[BackgroundServer, Recorder]]
MakeSidecar = Callable[..., RunningSidecar]

CHAT = {
    "model": "shadow-large",
    "messages": [{"role": "user", "content": "write a test for the cache"}],
    "max_tokens": 5,
}


def consume(bootstrap: str, topic: str, want: int, timeout_s: float = 20.0) -> list[TraceRecord]:
    """Read records from the start of ``topic`` until ``want`` distinct trace ids arrived."""

    async def run() -> list[TraceRecord]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
        )
        await consumer.start()
        records: dict[str, TraceRecord] = {}
        deadline = time.monotonic() + timeout_s
        try:
            while len(records) < want and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                for messages in batches.values():
                    for message in messages:
                        record = decode(message.value)
                        records[record.trace_id] = record
        finally:
            await consumer.stop()
        return list(records.values())

    return asyncio.run(run())


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll an observable condition (bounded); fail with ``what`` if it never holds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def seqs(records: list[TraceRecord]) -> set[int]:
    return {int(r.request.headers["x-seq"]) for r in records}


def test_records_reach_kafka_with_the_trace_id_as_key(
    broker: EmbeddedBroker, make_upstream: MakeUpstream, make_sidecar: MakeSidecar
) -> None:
    """Every exchange through the sidecar is one message on the topic, readable by aiokafka."""
    upstream, _ = make_upstream()
    topic = "test.capture.basic"
    sink = KafkaSink(KafkaConfig(bootstrap=broker.bootstrap, topic=topic, linger_ms=1))
    sidecar = make_sidecar(upstream.url, sink=sink)
    with httpx.Client() as http:
        for i in range(20):
            http.post(
                sidecar.url + "/v1/chat/completions", json=CHAT, headers={"x-seq": str(i)}
            ).raise_for_status()
    sidecar.stop()
    records = consume(broker.bootstrap, topic, 20)
    assert seqs(records) == set(range(20))
    assert all(r.usage is not None and r.usage.completion_tokens == 5 for r in records)


def test_broker_outage_fails_no_live_request_and_loses_no_record(
    make_upstream: MakeUpstream, make_sidecar: MakeSidecar
) -> None:
    """Broker stopped mid-traffic, then restarted: every request succeeds, every record arrives."""
    upstream, _ = make_upstream()
    broker = EmbeddedBroker(port=0)
    broker.start()
    topic = "test.capture.outage"
    sink = KafkaSink(
        KafkaConfig(bootstrap=broker.bootstrap, topic=topic, linger_ms=1), delivery_timeout_s=1.0
    )
    sidecar = make_sidecar(upstream.url, sink=sink)
    tee = sidecar.app.tee
    statuses: list[int] = []
    try:
        with httpx.Client(timeout=10) as http:

            def send(seq: int) -> None:
                reply = http.post(
                    sidecar.url + "/v1/chat/completions", json=CHAT, headers={"x-seq": str(seq)}
                )
                statuses.append(reply.status_code)

            for seq in range(40):
                send(seq)
            wait_for(lambda: tee.sent >= 40, 10, "the first 40 records to be acknowledged")
            before = consume(broker.bootstrap, topic, 40)

            broker.stop()
            for seq in range(40, 80):
                send(seq)
            wait_for(lambda: tee.spooling, 10, "the tee to notice the outage and spool")

            broker = EmbeddedBroker(port=broker.port)  # same address, empty memory
            broker.start()
            wait_for(
                lambda: not tee.spooling and tee.sent >= 80, 30, "the spool to drain after restart"
            )
            for seq in range(80, 90):
                send(seq)
        sidecar.stop()
        after = consume(broker.bootstrap, topic, 50)
    finally:
        broker.stop()
    assert statuses == [200] * 90
    assert seqs(before) == set(range(40))
    assert seqs(after) >= set(range(40, 90))


def test_cli_capture_to_a_file_and_stop_cleanly(
    make_upstream: MakeUpstream, tmp_path: Path
) -> None:
    """`shadow capture --out` proxies requests, writes records and exits 0 on SIGTERM."""
    upstream, _ = make_upstream()
    out = tmp_path / "traces.jsonl"
    command = [
        sys.executable, "-m", "shadow", "capture", "--upstream", upstream.url,
        "--listen", "127.0.0.1:0", "--out", str(out), "--spool-dir", str(tmp_path / "spool"),
    ]  # fmt: skip
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        url = match.group(1)
        with httpx.Client() as http:
            for i in range(5):
                reply = http.post(
                    url + "/v1/chat/completions", json=CHAT, headers={"x-seq": str(i)}
                )
                assert reply.status_code == 200
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert seqs(list(read_jsonl(out))) == set(range(5))


def test_cli_capture_without_a_sink_is_a_usage_error() -> None:
    """Forgetting both --kafka and --out is one line naming both, exit 2."""
    result = subprocess.run(
        [sys.executable, "-m", "shadow", "capture", "--upstream", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "--kafka" in result.stderr
    assert "--out" in result.stderr


def test_cli_capture_to_a_kafka_address(
    broker: EmbeddedBroker, make_upstream: MakeUpstream, tmp_path: Path
) -> None:
    """`--kafka kafka://HOST:PORT/TOPIC` tees to that topic, as `--kafka HOST:PORT --topic` does."""
    upstream, _ = make_upstream()
    address = f"kafka://{broker.bootstrap}/test.capture.address"
    command = [
        sys.executable, "-m", "shadow", "capture", "--upstream", upstream.url,
        "--listen", "127.0.0.1:0", "--kafka", address, "--spool-dir", str(tmp_path / "spool"),
    ]  # fmt: skip
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"teeing to {address} " in line, line
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        with httpx.Client() as http:
            for i in range(3):
                reply = http.post(
                    match.group(1) + "/v1/chat/completions", json=CHAT, headers={"x-seq": str(i)}
                )
                assert reply.status_code == 200
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert seqs(consume(broker.bootstrap, "test.capture.address", 3)) == {0, 1, 2}


def test_cli_capture_kafka_address_and_a_different_topic_is_a_usage_error() -> None:
    """A topic in the address and another in --topic is one line naming both, exit 2."""
    command = [
        sys.executable, "-m", "shadow", "capture", "--upstream", "http://127.0.0.1:9",
        "--kafka", "kafka://127.0.0.1:9092/one", "--topic", "two",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "topic one" in result.stderr
    assert "--topic is two" in result.stderr
