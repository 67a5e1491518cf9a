"""The embedded broker SIGKILLed and restarted at once, empty, while traffic flows."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import httpx

from capture.tee import Tee
from shadow.config import KafkaConfig
from shadow.kafka.broker import EmbeddedBroker
from shadow.kafka.producer import KafkaSink
from shadow.replay.sources import open_source
from shadow.serving import BackgroundServer
from shadow.trace.deadletter import DeadLetterFile
from tests.capture.conftest import Recorder, RunningSidecar
from tests.capture.test_kafka_capture import CHAT, consume, seqs, wait_for
from tests.shadow.trace.samples import read_all

MakeUpstream = Callable[..., tuple[BackgroundServer, Recorder]]
MakeSidecar = Callable[..., RunningSidecar]

_CONFIRMED = 30  # confirmed held before the kill: gone with the in-memory broker
_AROUND = 40  # records sent while the broker dies, and again after it is back


def _kill(broker: EmbeddedBroker) -> None:
    """SIGKILL the broker process (no shutdown of any kind) and reap it."""
    proc = broker._proc
    assert proc is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    broker.stop()


class _Traffic(threading.Thread):
    """Sends requests with increasing ``x-seq``, one after the other, until told to stop."""

    def __init__(self, url: str, start: int) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.next = start
        self.statuses: list[int] = []
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self.halt.is_set():
                reply = http.post(
                    self.url + "/v1/chat/completions", json=CHAT, headers={"x-seq": str(self.next)}
                )
                self.statuses.append(reply.status_code)
                self.next += 1


def _replay_reads(bootstrap: str, topic: str, tmp_path: Path) -> list[int]:
    """The ``x-seq`` of every record a bounded replay's source reads from the topic."""
    with DeadLetterFile(tmp_path / "dead.jsonl") as dead_letter:
        source = open_source(f"kafka://{bootstrap}/{topic}", dead_letter=dead_letter)
        items = asyncio.run(asyncio.wait_for(read_all(source), 30))
    return [int(item.record.request.headers["x-seq"]) for item in items]


def test_a_broker_restarted_empty_gets_every_record_it_lost_again(
    make_upstream: MakeUpstream, make_sidecar: MakeSidecar, tmp_path: Path
) -> None:
    """Records sent but not yet confirmed when the broker died, and all after, reach the topic.

    Before the fix the restarted broker acknowledged produce requests for a topic it no longer
    had and the sidecar counted them sent: 0 of 100 records sent after the restart arrived.
    """
    upstream, _ = make_upstream()
    broker = EmbeddedBroker(port=0)
    broker.start()
    topic = "test.capture.restart"
    sink = KafkaSink(
        KafkaConfig(bootstrap=broker.bootstrap, topic=topic, linger_ms=1), delivery_timeout_s=2.0
    )
    # the tee on the serving loop, so the test can lengthen its confirmation timer mid-run
    sidecar = make_sidecar(upstream.url, sink=sink, tee_on_loop=True)
    tee, metrics = sidecar.app.tee, sidecar.app.metrics
    assert isinstance(tee, Tee)
    try:
        with httpx.Client(timeout=10) as http:
            for seq in range(_CONFIRMED):
                http.post(
                    sidecar.url + "/v1/chat/completions", json=CHAT, headers={"x-seq": str(seq)}
                ).raise_for_status()
        wait_for(lambda: tee.sent == _CONFIRMED and tee.unconfirmed == 0, 20, "a confirmation")
        tee.confirm_interval_s = 3600.0  # from here on only a failed delivery prompts a check

        traffic = _Traffic(sidecar.url, _CONFIRMED)
        traffic.start()
        wait_for(lambda: traffic.next >= _CONFIRMED + _AROUND, 20, "traffic before the kill")
        assert tee.unconfirmed > 0  # sent, acknowledged, not yet known to be held
        _kill(broker)
        broker = EmbeddedBroker(port=broker.port)  # at once, same address, empty memory
        broker.start()
        restarted_at = traffic.next
        wait_for(lambda: traffic.next >= restarted_at + _AROUND, 30, "traffic after the restart")
        traffic.halt.set()
        traffic.join(30)
        assert not traffic.is_alive()
        total = traffic.next
        wait_for(lambda: tee.sent == total and not tee.spooling, 30, "every record sent")
        sidecar.stop()  # shutdown confirms what is left
        held = seqs(consume(broker.bootstrap, topic, total - _CONFIRMED))
        replayed = _replay_reads(broker.bootstrap, topic, tmp_path)
    finally:
        broker.stop()
    assert traffic.statuses == [200] * (total - _CONFIRMED)
    assert held == set(range(_CONFIRMED, total))  # the confirmed ones went with the broker
    assert sorted(set(replayed)) == sorted(held)  # and a bounded replay reads every one
    assert metrics.value("shadow_capture_records_sent_total") == total
    assert metrics.value("shadow_capture_records_unconfirmed") == 0
    assert metrics.value("shadow_capture_records_redelivered_total") > 0
    assert metrics.value("shadow_capture_records_sent_total") - _CONFIRMED == len(held)
    dropped = metrics.value("shadow_capture_records_dropped_total", reason="spool_full")
    assert dropped == 0
