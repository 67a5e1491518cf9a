"""The sidecar's tee runs in a worker process: it builds, redacts, delivers and spools there.

When the worker dies what it held is counted and a new one starts; the serving process only
hands exchanges over and reads the worker's reports.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from capture.exchange import Exchange, RecordBuilder
from capture.metrics import CaptureMetrics
from capture.redact import Redactor
from capture.sinks import FileSink
from capture.slices import SliceExtractor
from capture.spool import Spool
from capture.worker import ProcessTee
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


def _tee(
    tmp_path: Path, builder: RecordBuilder | None = None, **options: Any
) -> tuple[ProcessTee, CaptureMetrics]:
    metrics = CaptureMetrics()
    tee = ProcessTee(
        builder=builder or RecordBuilder(redactor=Redactor(), slices=SliceExtractor()),
        sink=FileSink(tmp_path / "records.jsonl"),
        spool_dir=tmp_path / "spool",
        spool_max_bytes=1 << 24,
        metrics=metrics,
        **options,
    )
    return tee, metrics


def _trace_ids(tmp_path: Path) -> list[str]:
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    return sorted(json.loads(line)["trace_id"] for line in lines)


async def _until(check: object, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_records_are_built_redacted_and_written_in_another_process(tmp_path: Path) -> None:
    tee, metrics = _tee(tmp_path)
    await tee.start()
    assert await tee.pid() != os.getpid()
    for i in range(50):
        tee.submit(_exchange(f"t{i:02d}", f"hello password=hunter2-{i}xx"))
    report = await tee.aclose()
    assert _trace_ids(tmp_path) == [f"t{i:02d}" for i in range(50)]
    assert "hunter2" not in (tmp_path / "records.jsonl").read_text()
    # the worker's counts reach this process's metrics and the drain report
    assert report.sent == 50
    assert report.dropped == 0
    assert metrics.value("shadow_capture_records_sent_total") == 50
    assert not tee.alive


async def test_the_worker_reports_its_counts_while_it_runs(tmp_path: Path) -> None:
    tee, metrics = _tee(tmp_path)
    await tee.start()
    for i in range(10):
        tee.submit(_exchange(f"r{i}", "x"))
    await _until(lambda: tee.sent == 10 and tee.queue_depth == 0, "the worker's report")
    assert metrics.value("shadow_capture_records_sent_total") == 10
    await tee.aclose()


class _Dying(RecordBuilder):
    """A real builder whose process dies at the exchange named ``die``."""

    def build(self, exchange: Exchange) -> tuple[TraceRecord, bytes]:
        if exchange.trace_id == "die":
            os._exit(3)
        return super().build(exchange)


async def test_a_worker_dying_counts_what_it_held_and_a_new_one_takes_over(
    tmp_path: Path,
) -> None:
    tee, metrics = _tee(tmp_path, _Dying(redactor=Redactor(), slices=SliceExtractor()))
    await tee.start()
    tee.submit(_exchange("die", "b"))
    await _until(lambda: not tee.alive, "the worker to die")
    died = metrics.value("shadow_capture_records_dropped_total", reason="worker_died")
    assert died == 1  # its last report had the exchange that killed it queued
    tee.submit(_exchange("after", "c"))
    report = await tee.aclose()
    assert _trace_ids(tmp_path) == ["after"]
    assert tee.restarts == 1
    assert report.sent == 1
    assert report.dropped == died


async def test_a_killed_worker_is_restarted_and_the_tee_keeps_delivering(tmp_path: Path) -> None:
    tee, metrics = _tee(tmp_path)
    await tee.start()
    first = await tee.pid()
    os.kill(first, signal.SIGKILL)
    await _until(lambda: not tee.alive, "the worker's death to be noticed")
    for i in range(20):
        tee.submit(_exchange(f"k{i:02d}", "b"))
    report = await tee.aclose()
    assert _trace_ids(tmp_path) == [f"k{i:02d}" for i in range(20)]
    assert tee.restarts == 1
    assert metrics.value("shadow_capture_records_dropped_total", reason="worker_died") == 0
    assert report.dropped == 0


async def test_a_record_that_fails_to_build_is_counted_and_the_rest_land(tmp_path: Path) -> None:
    tee, metrics = _tee(tmp_path)
    await tee.start()
    broken = _exchange("broken", "c")
    broken.request_headers = [(b"content-type", 5)]  # type: ignore[list-item]  # .decode fails
    tee.submit(_exchange("fine", "d"))
    tee.submit(broken)
    report = await tee.aclose()
    assert _trace_ids(tmp_path) == ["fine"]
    assert metrics.value("shadow_capture_records_dropped_total", reason="build_error") == 1
    assert report.dropped == 1


class _Unreachable(FileSink):
    """A file sink whose every write fails, so the worker's tee spools."""

    async def send_batch(self, batch: object) -> None:
        from capture.sinks import SinkError

        raise SinkError("down")


async def test_when_the_sink_is_down_the_worker_spools_and_leaves_it_for_the_next_start(
    tmp_path: Path,
) -> None:
    metrics = CaptureMetrics()
    tee = ProcessTee(
        builder=RecordBuilder(redactor=Redactor(), slices=SliceExtractor()),
        sink=_Unreachable(tmp_path / "never.jsonl"),
        spool_dir=tmp_path / "spool",
        spool_max_bytes=1 << 24,
        metrics=metrics,
    )
    await tee.start()
    for i in range(15):
        tee.submit(_exchange(f"s{i:02d}", "x"))
    await _until(lambda: tee.spooling and tee.spool_bytes > 0, "the worker to spool")
    report = await tee.aclose(grace_s=0.5)
    assert report.sent == 0
    assert report.spooled_pending == 15
    assert metrics.value("shadow_capture_records_spooled_total") == 15
    # the next tee on the same spool (a working sink this time) delivers them first
    again, _ = _tee(tmp_path)
    await again.start()
    await _until(lambda: again.sent == 15, "the spool to drain")
    await again.aclose()
    assert _trace_ids(tmp_path) == [f"s{i:02d}" for i in range(15)]
    assert Spool(tmp_path / "spool", max_bytes=1 << 24).empty


async def test_a_worker_whose_serving_process_is_gone_closes_its_tee(tmp_path: Path) -> None:
    tee, _ = _tee(tmp_path)
    await tee.start()
    for i in range(5):
        tee.submit(_exchange(f"o{i}", "x"))
    await _until(lambda: tee.queue_depth == 0 and tee.sent == 5, "delivery")
    child = tee._child
    assert child is not None
    child.writer.close()  # what the worker sees when the serving process dies
    await asyncio.to_thread(child.process.join, 30)
    assert child.process.exitcode == 0
    await tee.aclose()
    assert _trace_ids(tmp_path) == [f"o{i}" for i in range(5)]


async def test_the_worker_takes_the_idle_class_and_the_cpus_it_is_given(tmp_path: Path) -> None:
    tee, _ = _tee(tmp_path, cpus="0")
    await tee.start()
    pid = await tee.pid()
    assert os.sched_getscheduler(pid) == os.SCHED_IDLE  # never ahead of a request
    assert os.sched_getaffinity(pid) == {0}
    await tee.aclose()


async def test_a_worker_of_a_pinned_serving_process_runs_on_the_other_cpus(
    tmp_path: Path,
) -> None:
    everything = set(range(os.cpu_count() or 1))
    if len(everything) < 2 or os.sched_getaffinity(0) != everything:
        pytest.fail("this test needs two CPUs or more, all usable by the test process")
    tee, _ = _tee(tmp_path, priority="normal")
    own = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})  # the serving process pinned, as `taskset -c 0` would
    try:
        await tee.start()
        pid = await tee.pid()
    finally:
        os.sched_setaffinity(0, own)
    assert os.sched_getaffinity(pid) == everything - {0}
    assert os.sched_getscheduler(pid) == os.SCHED_OTHER
    await tee.aclose()


async def test_large_bodies_go_over_in_batches_and_every_record_lands(tmp_path: Path) -> None:
    """Forty exchanges of 1 MiB answers are about 40 MiB, past what the socket may hold."""
    tee, metrics = _tee(tmp_path)
    await tee.start()
    big = b'{"choices":[{"message":{"content":"' + b"x" * (1 << 20) + b'"}}]}'
    for i in range(40):
        ex = _exchange(f"b{i:02d}", "large")
        ex.response_body.buf = bytearray(big)
        ex.response_body.size = len(big)
        tee.submit(ex)
    report = await tee.aclose()
    assert _trace_ids(tmp_path) == [f"b{i:02d}" for i in range(40)]
    assert report.dropped == 0
    assert metrics.value("shadow_capture_records_dropped_total", reason="queue_full") == 0
