"""Records are built in a worker process; when it dies, records are counted and it restarts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

from capture.exchange import Exchange, RecordBuilder
from capture.metrics import CaptureMetrics
from capture.redact import Redactor
from capture.sinks import FileSink
from capture.slices import SliceExtractor
from capture.spool import Spool
from capture.tee import Tee
from capture.worker import BuildWorker
from shadow.trace.record import TraceRecord


def _exchange(trace_id: str, content: str) -> Exchange:
    ex = Exchange(
        trace_id=trace_id,
        started_ns=1,
        t0=time.perf_counter(),
        method="POST",
        path="/v1/chat/completions",
        query="",
        request_headers=[(b"content-type", b"application/json")],
        cap=1 << 20,
    )
    body = {"model": "m", "messages": [{"role": "user", "content": content}]}
    ex.request_body.add(json.dumps(body).encode())
    ex.status = 200
    ex.response_headers = [(b"content-type", b"application/json")]
    ex.response_body.add(b'{"choices":[{"message":{"content":"ok"}}]}')
    ex.finish()
    return ex


def _tee(tmp_path: Path) -> tuple[Tee, BuildWorker, CaptureMetrics]:
    metrics = CaptureMetrics()
    worker = BuildWorker(RecordBuilder(redactor=Redactor(), slices=SliceExtractor()), metrics)
    tee = Tee(
        builder=worker.builder,
        sink=FileSink(tmp_path / "records.jsonl"),
        spool=Spool(tmp_path / "spool", max_bytes=1 << 24),
        metrics=metrics,
        worker=worker,
    )
    return tee, worker, metrics


async def test_records_are_built_and_redacted_in_another_process(tmp_path: Path) -> None:
    tee, worker, _ = _tee(tmp_path)
    assert await worker.pid() != os.getpid()
    tee.start()
    for i in range(50):
        tee.submit(_exchange(f"t{i:02d}", f"hello password=hunter2-{i}xx"))
    report = await tee.aclose()
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["trace_id"] for line in lines) == [
        f"t{i:02d}" for i in range(50)
    ]
    assert "hunter2" not in "".join(lines)
    assert report.sent == 50
    assert report.dropped == 0


class _Dying(RecordBuilder):
    """A real builder whose process dies at the exchange named ``die``."""

    def build(self, exchange: Exchange) -> tuple[TraceRecord, bytes]:
        if exchange.trace_id == "die":
            os._exit(3)
        return super().build(exchange)


async def test_a_worker_dying_mid_batch_drops_and_counts_it_and_is_restarted(
    tmp_path: Path,
) -> None:
    metrics = CaptureMetrics()
    worker = BuildWorker(_Dying(redactor=Redactor(), slices=SliceExtractor()), metrics)
    first = await worker.pid()
    # The batch the worker held when it died is dropped (never raised); the next restarts it.
    assert await worker.encode([_exchange("ok", "a"), _exchange("die", "b")]) == []
    assert metrics.value("shadow_capture_records_dropped_total", reason="worker_died") == 2
    out = await worker.encode([_exchange("after", "c")])
    assert [key for key, _ in out] == [b"after"]
    assert worker.restarts == 1
    assert await worker.pid() not in (first, os.getpid())
    await asyncio.wait_for(worker.aclose(), 30)


async def test_a_killed_worker_is_restarted_and_the_tee_keeps_delivering(tmp_path: Path) -> None:
    tee, worker, metrics = _tee(tmp_path)
    first = await worker.pid()
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while worker.alive:  # its socket closes with it
        assert time.monotonic() < deadline, "the worker's death was not noticed"
        await asyncio.sleep(0.01)
    tee.start()
    for i in range(20):
        tee.submit(_exchange(f"k{i:02d}", "b"))
    report = await tee.aclose()
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["trace_id"] for line in lines) == [
        f"k{i:02d}" for i in range(20)
    ]
    assert worker.restarts == 1
    assert metrics.value("shadow_capture_records_dropped_total", reason="worker_died") == 0
    assert report.dropped == 0


async def test_a_batch_that_fails_to_build_is_counted_and_the_rest_land(tmp_path: Path) -> None:
    _, worker, metrics = _tee(tmp_path)
    broken = _exchange("broken", "c")
    broken.request_headers = [(b"content-type", 5)]  # type: ignore[list-item]  # .decode fails
    out = await worker.encode([_exchange("fine", "d"), broken])
    assert [key for key, _ in out] == [b"fine"]
    assert metrics.value("shadow_capture_records_dropped_total", reason="build_error") == 1
    await asyncio.wait_for(worker.aclose(), 30)
