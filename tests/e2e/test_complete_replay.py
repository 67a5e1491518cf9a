"""Complete Kafka replays on real parts: a burst through the sidecar, the replay's read report."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx

from capture.live.serve import LiveServer
from capture.sidecar import Sidecar
from capture.sinks import KafkaSink
from shadow.config import CaptureConfig, KafkaConfig
from shadow.kafka.broker import EmbeddedBroker
from shadow.kafka.source import KafkaSource
from shadow.replay.sources import open_source
from shadow.sim import MockLLMServer
from shadow.trace.deadletter import DeadLetterFile
from tests.shadow.kafka.test_complete_reads import produce_batched
from tests.shadow.kafka.test_source import new_topic
from tests.shadow.trace.samples import make_record, read_all

BURST = 400
CHAT = {"model": "shadow-large", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


async def burst(url: str, n: int, parallel: int = 40) -> None:
    """``n`` chat requests, ``parallel`` at a time, each tagged with its number."""
    gate = asyncio.Semaphore(parallel)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:

        async def one(i: int) -> None:
            async with gate:
                reply = await http.post(
                    "/v1/chat/completions", json=CHAT, headers={"x-seq": str(i)}
                )
                assert reply.status_code == 200

        await asyncio.gather(*(one(i) for i in range(n)))


async def test_a_burst_through_the_sidecar_is_replayed_whole(
    broker: EmbeddedBroker, mock_large: MockLLMServer, tmp_path: Path
) -> None:
    """400 concurrent requests through the sidecar: a bounded read gets every one of them."""
    topic = await new_topic(broker, partitions=3)
    app = Sidecar(
        capture=CaptureConfig(upstream=mock_large.url, spool_dir=str(tmp_path / "spool")),
        sink=KafkaSink(KafkaConfig(bootstrap=broker.bootstrap, topic=topic, linger_ms=20)),
    )
    sidecar = LiveServer(app)
    sidecar.start()
    try:
        await burst(sidecar.url, BURST)
    finally:
        await asyncio.to_thread(sidecar.stop)  # drains the tee into Kafka
    with DeadLetterFile(tmp_path / "dead.jsonl") as dead_letter:
        source = open_source(f"kafka://{broker.bootstrap}/{topic}", dead_letter=dead_letter)
        assert isinstance(source, KafkaSource)
        items = await asyncio.wait_for(read_all(source), 30)
    seqs = sorted(int(item.record.request.headers["x-seq"]) for item in items)
    assert seqs == list(range(BURST))
    assert source.report.status == "complete"


def replay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shadow", "replay", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


async def test_the_replay_summary_reports_each_partition_and_shards_read_all(
    broker: EmbeddedBroker, mock_large: MockLLMServer, mock_routed: MockLLMServer, tmp_path: Path
) -> None:
    """`shadow replay kafka://…` reads all batched records and says so (JSON, text), --shard too."""
    topic = await new_topic(broker, partitions=2)
    await produce_batched(broker, topic, [make_record(i) for i in range(200)])
    spec = f"kafka://{broker.bootstrap}/{topic}"
    arms = ["--baseline", mock_large.url, "--candidate", mock_routed.url, "--rate", "2000"]

    whole = await asyncio.to_thread(
        replay, spec, *arms, "--out", str(tmp_path / "a.duckdb"), "--json"
    )
    assert whole.returncode == 0, whole.stderr
    summary = json.loads(whole.stdout)
    assert summary["records"] == 200
    reads = summary["reads"]
    assert reads["source"] == spec
    assert reads["status"] == "complete"
    assert reads["records"] == 200
    assert [p["partition"] for p in reads["partitions"]] == [0, 1]
    assert sum(p["records"] for p in reads["partitions"]) == 200

    shard = await asyncio.to_thread(
        replay, spec, *arms, "--shard", "1/2", "--out", str(tmp_path / "b.duckdb"), "--quiet"
    )
    assert shard.returncode == 0, shard.stderr
    assert f"read {spec}: 200 records, complete" in shard.stdout
    assert "  partition 0: offsets 0.." in shard.stdout
