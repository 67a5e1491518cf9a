"""The embedded broker: real Kafka clients, clean start/stop, clear errors."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shadow.errors import BrokerError, UsageError
from shadow.kafka.broker import EmbeddedBroker


async def test_aiokafka_produces_and_a_consumer_group_reads_back(broker: EmbeddedBroker) -> None:
    """Messages produced with zstd compression are read back in order by a consumer group."""
    topic = "test.broker.roundtrip"
    producer = AIOKafkaProducer(
        bootstrap_servers=broker.bootstrap, compression_type="zstd", enable_idempotence=False
    )
    await producer.start()
    try:
        for i in range(50):
            await producer.send(topic, f"message {i}".encode(), key=b"k")
        await producer.flush()
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id="test-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    received: list[bytes] = []
    try:
        while len(received) < 50:
            batches = await consumer.getmany(timeout_ms=5000)
            assert batches, "no messages within 5 s"
            for messages in batches.values():
                received.extend(m.value for m in messages if m.value is not None)
        await consumer.commit()
        committed = await consumer.committed(TopicPartition(topic, 0))
    finally:
        await consumer.stop()
    assert received == [f"message {i}".encode() for i in range(50)]
    assert committed == 50


def _running(broker: EmbeddedBroker) -> bool:
    """Read ``running`` afresh (a call, so the checker does not carry an earlier answer over)."""
    return broker.running


async def test_async_context_manager_starts_on_a_free_port_and_stops() -> None:
    """`async with EmbeddedBroker(port=0)` serves Kafka clients and is gone afterwards."""
    async with EmbeddedBroker(port=0) as extra:
        assert extra.port != 0
        assert extra.running
        producer = AIOKafkaProducer(bootstrap_servers=extra.bootstrap, enable_idempotence=False)
        await producer.start()
        metadata = await producer.send_and_wait("test.ctx", b"x")
        await producer.stop()
        assert metadata.offset == 0
    assert not _running(extra)
    await extra.aclose()  # safe twice


def test_a_taken_port_is_a_usage_error_with_the_fix(broker: EmbeddedBroker) -> None:
    """Starting on a port that is in use names the port and suggests another."""
    with pytest.raises(UsageError, match=rf"^port {broker.port} .* already in use.*another port"):
        EmbeddedBroker(port=broker.port).start()


def test_cli_names_the_port_flag_when_the_port_is_taken(broker: EmbeddedBroker) -> None:
    """`shadow broker --port N` on a taken port says so of --port, in one line, exit 2."""
    result = subprocess.run(
        [sys.executable, "-m", "shadow", "broker", "--port", str(broker.port)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"shadow: error: --port {broker.port} on 127.0.0.1 is already in use; stop whatever "
        "holds it or choose another port (0 picks a free one)"
    ]


def test_a_missing_binary_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CALF_TANSU_BIN that points nowhere gives one line naming it and the ways out."""
    monkeypatch.setenv("CALF_TANSU_BIN", "/nonexistent/tansu")
    with pytest.raises(BrokerError, match=r"CALF_TANSU_BIN.*existing Kafka cluster"):
        EmbeddedBroker(port=0).start()


def test_cli_prints_the_bootstrap_and_stops_cleanly_on_sigint() -> None:
    """`shadow broker --port 0` prints a reachable bootstrap address and exits 0 on SIGINT."""
    with subprocess.Popen(
        [sys.executable, "-m", "shadow", "broker", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"bootstrap servers: (127\.0\.0\.1):(\d+)", line)
        assert match, line
        assert "data is kept in memory only: a restart empties every topic" in line
        probe = EmbeddedBroker(port=int(match.group(2)))
        with pytest.raises(UsageError):  # the port is really held by the running broker
            probe.start()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_cli_missing_binary_exits_2_with_one_line() -> None:
    """With no usable broker binary the CLI prints one line and exits with an error status."""
    env = {**os.environ, "CALF_TANSU_BIN": "/nonexistent/tansu"}
    result = subprocess.run(
        [sys.executable, "-m", "shadow", "broker", "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("shadow: error: no embedded broker binary")


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie waiting to be reaped does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid``, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid and _alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def _refused(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:``port`` any more."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except ConnectionRefusedError:
        return True
    return False


def _within(seconds: float, condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)  # polling an observable state, bounded above
    return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_a_sigkilled_cli_broker_takes_its_broker_process_with_it_and_frees_the_port() -> None:
    """`kill -9` of `shadow broker` leaves no Tansu process serving its port (no orphan)."""
    with subprocess.Popen(
        [sys.executable, "-m", "shadow", "broker", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"bootstrap servers: 127\.0\.0\.1:(\d+)", line)
        assert match, line
        port = int(match.group(1))
        tansu = _children(proc.pid)
        assert len(tansu) == 1
        assert not _refused(port)
        proc.kill()
        proc.wait()
    assert _within(10, lambda: not _alive(tansu[0])), f"the broker process {tansu[0]} survived"
    assert _within(10, lambda: _refused(port)), f"port {port} is still served"
