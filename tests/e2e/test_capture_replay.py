"""The whole path on real parts: SDK → sidecar → Kafka → replay / live mirror → results."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import duckdb
import openai

from capture.live.serve import LiveServer
from capture.sidecar import Sidecar
from capture.sinks import KafkaSink
from shadow.config import CaptureConfig, KafkaConfig
from shadow.kafka.broker import EmbeddedBroker
from shadow.sim import MockLLMServer

Sdk = Callable[[str], openai.OpenAI]


def capture_traffic(
    broker: EmbeddedBroker, upstream: str, topic: str, tmp_path: Path, sdk: Sdk, n: int
) -> None:
    """Send ``n`` chat requests through a sidecar that tees to ``topic``."""
    app = Sidecar(
        capture=CaptureConfig(upstream=upstream, spool_dir=str(tmp_path / f"spool-{topic}")),
        sink=KafkaSink(KafkaConfig(bootstrap=broker.bootstrap, topic=topic, linger_ms=1)),
    )
    with LiveServer(app) as sidecar:
        client = sdk(sidecar.url)
        for i in range(n):
            client.chat.completions.create(
                model="shadow-large",
                messages=[{"role": "user", "content": f"refactor module {i} " * (1 + i % 3)}],
                max_tokens=8,
                stream=i % 2 == 0,
                metadata={"intent": "refactor" if i % 4 == 0 else "complete"},
                extra_headers={"x-tenant": "acme" if i % 2 else "globex"},
            )
    # Leaving the block stops the sidecar, which drains its tee into Kafka.


def test_capture_to_kafka_then_replay_from_kafka(
    broker: EmbeddedBroker,
    mock_large: MockLLMServer,
    mock_routed: MockLLMServer,
    tmp_path: Path,
    sdk: Sdk,
) -> None:
    """Traffic captured through the sidecar replays from Kafka to both arms, one row each."""
    topic = "e2e.capture.replay"
    capture_traffic(broker, mock_large.url, topic, tmp_path, sdk, 12)
    out = tmp_path / "run.duckdb"
    result = subprocess.run(
        [sys.executable, "-m", "shadow", "replay", f"kafka://{broker.bootstrap}/{topic}",
         "--baseline", mock_large.url, "--candidate", mock_routed.url, "--speed", "20",
         "--repeat-baseline", "--out", str(out), "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["records"] == 12
    with duckdb.connect(str(out), read_only=True) as con:
        per_arm = dict(con.execute("select arm, count(*) from results group by arm").fetchall())
        slices = con.execute("select distinct slices['tenant'] from results order by 1").fetchall()
        streamed = con.execute(
            "select count(*) from results where ttft_ms is not null and arm = 'candidate'"
        ).fetchone()
    assert per_arm == {"baseline": 12, "baseline_repeat": 12, "candidate": 12}
    assert slices == [("acme",), ("globex",)]
    assert streamed == (6,)  # the streamed half measured TTFT on replay too


def test_live_mirror_stores_production_and_candidate(
    broker: EmbeddedBroker, mock_large: MockLLMServer, mock_routed: MockLLMServer,
    tmp_path: Path, sdk: Sdk,
) -> None:  # fmt: skip
    """The mirror sends each new record to the candidate and keeps production's answer."""
    topic = "e2e.mirror"
    out = tmp_path / "mirror.duckdb"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with subprocess.Popen(
        [sys.executable, "-m", "shadow", "mirror", f"kafka://{broker.bootstrap}/{topic}",
         "--candidate", mock_routed.url, "--out", str(out), "--metrics-port", str(port),
         "--group-id", "e2e-mirror", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as proc:  # fmt: skip
        capture_traffic(broker, mock_large.url, topic, tmp_path, sdk, 8)
        deadline = time.monotonic() + 60
        done = False
        while not done and time.monotonic() < deadline:
            done = proc.poll() is not None or _candidate_sent(port) >= 8
            time.sleep(0.2)  # polling an observable count, bounded by the deadline
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["arms"]["candidate"]["sent"] == 8
    with duckdb.connect(str(out), read_only=True) as con:
        per_arm = dict(con.execute("select arm, count(*) from results group by arm").fetchall())
        production_models = con.execute(
            "select distinct model from results where arm = 'production'"
        ).fetchall()
    assert per_arm == {"production": 8, "candidate": 8}
    assert production_models == [("shadow-large",)]


def _candidate_sent(port: int) -> float:
    """The mirror's own count of candidate sends, from its Prometheus endpoint (0 if not up)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
            text = reply.read().decode()
    except OSError:
        return 0.0
    match = re.search(r'^shadow_mirror_sent_total\{arm="candidate"\} (\S+)', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0
