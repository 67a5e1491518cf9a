"""The tee builds records of large bodies in a worker thread, off the live path's event loop."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from capture.exchange import Exchange, RecordBuilder
from capture.metrics import CaptureMetrics
from capture.redact import Redactor
from capture.sinks import FileSink
from capture.slices import SliceExtractor
from capture.spool import Spool
from capture.tee import Tee
from shadow.trace.record import TraceRecord


class _Recording(RecordBuilder):
    """A real builder that notes which thread built each trace."""

    threads: dict[str, int]

    def build(self, exchange: Exchange) -> tuple[TraceRecord, bytes]:
        self.threads[exchange.trace_id] = threading.get_ident()
        return super().build(exchange)


def _exchange(trace_id: str, content: str) -> Exchange:
    ex = Exchange(
        trace_id=trace_id,
        started_ns=1,
        t0=time.perf_counter(),
        method="POST",
        path="/v1/chat/completions",
        query="",
        request_headers=[(b"content-type", b"application/json")],
        cap=4 << 20,
    )
    body = {"model": "m", "messages": [{"role": "user", "content": content}]}
    ex.request_body.add(json.dumps(body).encode())
    ex.status = 200
    ex.response_headers = [(b"content-type", b"application/json")]
    ex.response_body.add(b'{"choices":[{"message":{"content":"ok"}}]}')
    ex.finish()
    return ex


async def test_a_megabyte_body_is_built_in_a_worker_thread(tmp_path: Path) -> None:
    """A 1 MB request is redacted and encoded off the loop; a small one on it; both land."""
    builder = _Recording(redactor=Redactor(), slices=SliceExtractor())
    builder.threads = {}
    sink = FileSink(tmp_path / "records.jsonl")
    tee = Tee(
        builder=builder,
        sink=sink,
        spool=Spool(tmp_path / "spool", max_bytes=1 << 26),
        metrics=CaptureMetrics(),
    )
    tee.start()
    secret = "password=hunter2-" + "x" * 8
    tee.submit(_exchange("big", ("lorem ipsum dolor sit amet " * 40_000) + secret))
    tee.submit(_exchange("small", "hello " + secret))
    await tee.aclose()
    await sink.aclose()
    loop_thread = threading.get_ident()
    assert builder.threads["big"] != loop_thread
    assert builder.threads["small"] == loop_thread
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["trace_id"] for line in lines) == ["big", "small"]
    assert "hunter2" not in "".join(lines)
