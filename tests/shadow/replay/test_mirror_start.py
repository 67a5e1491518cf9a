"""``shadow mirror`` at start: it waits for Kafka as the sidecar does; it reports dead letters."""

from __future__ import annotations

import asyncio
import itertools
import json
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO

from aiokafka import AIOKafkaProducer

from shadow.kafka.broker import EmbeddedBroker
from shadow.kafka.retry import FIRST_RETRY_S, MAX_RETRY_S, Backoff
from shadow.sim import MockLLMServer
from shadow.trace.record import encode
from tests.shadow.trace.samples import chat_record

WAITING = re.compile(  # the reason depends on how the attempt failed (refused, or timed out)
    r"Kafka at 127\.0\.0\.1:\d+ does not answer \([^)]+\); trying again in \d+\.\d s"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def lines_of(stream: IO[str]) -> queue.Queue[str]:
    """The lines of ``stream`` as they arrive, read on a daemon thread."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        try:
            for line in stream:
                lines.put(line)
        except ValueError:  # closed under us (the test's cleanup): nothing more to read
            return

    threading.Thread(target=read, daemon=True).start()
    return lines


def wait_for_line(lines: queue.Queue[str], pattern: re.Pattern[str], seen: list[str]) -> None:
    deadline = time.monotonic() + 60  # a busy machine starts a Python process slowly
    while not any(pattern.search(line) for line in seen):
        seen.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))


def metric(port: int, name: str) -> float:
    """One sample of the mirror's Prometheus endpoint (0 while it is not up)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
            text = reply.read().decode()
    except OSError:
        return 0.0
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def within(seconds: float, condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)  # polling an observable count, bounded by the deadline
    return True


def mirror(kafka_port: int, candidate: str, tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable, "-m", "shadow", "mirror", f"kafka://127.0.0.1:{kafka_port}/m.start",
            "--candidate", candidate, "--out", str(tmp_path / "mirror.duckdb"), "--json",
            "--group-id", "mirror-start", *extra,
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def stop(proc: subprocess.Popen[str]) -> None:
    """Kill the mirror if it still runs and close its pipes (``communicate()`` has closed them
    when the test got that far): a failed test must not leak them into a later one."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None and not pipe.closed:
            pipe.close()


async def produce(bootstrap: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait("m.start", value, key=b"k")
    finally:
        await producer.stop()


def test_the_backoff_is_the_sidecars_doubling_capped_schedule() -> None:
    """0.2 s, doubling, at most 5 s (capture's spool drainer retries on the same schedule)."""
    delays = list(itertools.islice(Backoff().delays(), 7))
    assert delays == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert (FIRST_RETRY_S, MAX_RETRY_S) == (0.2, 5.0)


def test_a_mirror_started_before_its_broker_waits_then_mirrors_and_counts_dead_letters(
    mock_routed: MockLLMServer, tmp_path: Path
) -> None:
    """No broker yet: the mirror says so and retries; once the broker is up it mirrors the valid
    record and dead-letters the bad one, to --dead-letter, counted in its metrics and summary."""
    kafka_port, metrics_port = free_port(), free_port()
    dead = tmp_path / "bad.jsonl"
    proc = mirror(
        kafka_port, mock_routed.url, tmp_path,
        "--dead-letter", str(dead), "--metrics-port", str(metrics_port),
    )  # fmt: skip
    assert proc.stderr is not None
    stderr = lines_of(proc.stderr)
    seen: list[str] = []
    try:
        wait_for_line(stderr, WAITING, seen)
        assert f"bad records to {dead}" in " ".join("".join(seen).split())  # rich wraps
        assert proc.poll() is None  # still waiting, not failed
        with EmbeddedBroker(port=kafka_port) as broker:
            record = encode(chat_record("t-mirror-1"))
            asyncio.run(produce(broker.bootstrap, [record, b'{"v": 1, "not": "a record"}']))
            sent = 'shadow_mirror_sent_total{arm="candidate"}'
            assert within(30, lambda: metric(metrics_port, sent) >= 1), "".join(seen)
            dead_total = "shadow_mirror_dead_letter_records_total"
            assert within(10, lambda: metric(metrics_port, dead_total) == 1)
            proc.send_signal(signal.SIGINT)
            stdout, _ = proc.communicate(timeout=60)
    finally:
        stop(proc)
    seen += list(stderr.queue)
    assert proc.returncode == 0, "".join(seen)
    summary = json.loads(stdout)
    assert summary["arms"]["candidate"]["sent"] == 1
    assert (summary["dead_letter"], summary["dead_letter_path"]) == (1, str(dead))
    assert len(dead.read_text().splitlines()) == 1
    assert any("answers after" in line for line in seen)


def test_ctrl_c_while_waiting_for_kafka_ends_the_mirror_cleanly(
    mock_routed: MockLLMServer, tmp_path: Path
) -> None:
    """A stop request ends the wait at once: exit 0, nothing mirrored, no traceback."""
    proc = mirror(free_port(), mock_routed.url, tmp_path, "--metrics-port", "0")
    assert proc.stderr is not None
    stderr = lines_of(proc.stderr)
    seen: list[str] = []
    try:
        wait_for_line(stderr, WAITING, seen)
        proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate(timeout=30)
    finally:
        stop(proc)
    seen += list(stderr.queue)
    assert proc.returncode == 0, "".join(seen)
    assert "Traceback" not in "".join(seen)
    summary = json.loads(stdout)
    assert summary["records"] == 0
    assert summary["dead_letter"] == 0
    assert summary["dead_letter_path"] == str(tmp_path / "mirror.duckdb.dead.jsonl")
