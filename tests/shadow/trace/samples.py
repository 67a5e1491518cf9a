"""Sample records and small helpers shared by the trace-source tests (files and Kafka)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from shadow.trace.record import (
    HttpRequest,
    HttpResponse,
    Timing,
    TraceRecord,
    Usage,
    body_fields,
    encode,
)
from shadow.trace.source import SourceItem, TraceSource

T0 = 1_700_000_000_000_000_000  # captured_at of record 0, in epoch ns
STEP = 1_000_000_000  # one second between records


def make_record(
    i: int, *, captured_at: int | None = None, body: bytes | None = None
) -> TraceRecord:
    """A small, complete record; ``i`` picks its id and (by default) its capture time."""
    return TraceRecord(
        trace_id=f"t{i:04d}",
        captured_at=T0 + i * STEP if captured_at is None else captured_at,
        service="code",
        sidecar="sc-1",
        request=HttpRequest(
            method="POST",
            path="/v1/chat/completions",
            query="a=1",
            headers={"content-type": "application/json", "x-seq": str(i)},
            **body_fields(body if body is not None else b'{"prompt": "hi"}'),
        ),
        response=HttpResponse(
            status=200, stream=True, chunk_offsets_ms=[1.5, 2.0], **body_fields(b"hello")
        ),
        timing=Timing(latency_ms=12.5, ttft_ms=3.0),
        usage=Usage(model="m-large", prompt_tokens=5, completion_tokens=7),
        slices={"tenant": f"ten-{i % 3}", "intent": "code"},
    )


def chat_record(trace_id: str = "t-1", **overrides: Any) -> TraceRecord:
    """A chat completion record; ``overrides`` replace any of its fields."""
    fields: dict[str, Any] = {
        "trace_id": trace_id,
        "captured_at": 1_700_000_000_000_000_000,
        "service": "chat-api",
        "request": HttpRequest(
            method="POST",
            path="/v1/chat/completions",
            headers={"content-type": "application/json"},
            body='{"model": "shadow-large", "messages": []}',
        ),
        "response": HttpResponse(status=200, body='{"choices": []}'),
        "timing": Timing(latency_ms=812.5),
        "usage": Usage(model="shadow-large", prompt_tokens=12, completion_tokens=40),
        "slices": {"tenant": "acme"},
    }
    fields.update(overrides)
    return TraceRecord(**fields)


def valid_json() -> dict[str, Any]:
    """A valid record as plain JSON data, for tests that break one field of it."""
    data: dict[str, Any] = json.loads(encode(chat_record()))
    return data


def dead_letters(path: Path) -> list[dict[str, Any]]:
    """The entries of a dead-letter file (none when it was never created)."""
    if not path.exists():
        return []
    return [msgspec.json.decode(line) for line in path.read_bytes().splitlines()]


async def read_all(source: TraceSource) -> list[SourceItem]:
    """Every item of ``source``, which is closed afterwards."""
    try:
        return [item async for item in source]
    finally:
        await source.aclose()


def ids(items: Sequence[SourceItem]) -> list[str]:
    """The trace ids of ``items``, in order."""
    return [item.record.trace_id for item in items]


def keyed(records: Sequence[TraceRecord]) -> list[tuple[bytes, bytes]]:
    """Records as Kafka ``(key, value)`` pairs, keyed by trace id."""
    return [(r.trace_id.encode(), encode(r)) for r in records]
