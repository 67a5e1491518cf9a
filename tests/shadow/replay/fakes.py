"""In-process stand-ins for the fan-out's tests: targets that answer, price or raise, a source."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from shadow.replay.sources import SourceItem
from shadow.replay.targets import Attempt
from shadow.trace.jsonl import write_jsonl
from shadow.trace.record import HttpRequest, HttpResponse, TraceRecord

T0 = 1_700_000_000_000_000_000


def records(n: int, *, step_ns: int = 1_000_000) -> list[TraceRecord]:
    """``n`` chat requests, ``step_ns`` apart, each with the production answer captured."""
    return [
        TraceRecord(
            trace_id=f"t{i:03d}",
            captured_at=T0 + i * step_ns,
            request=HttpRequest(method="POST", path="/v1/chat/completions", body="{}"),
            response=HttpResponse(status=200, body='{"choices": []}'),
        )
        for i in range(n)
    ]


def trace_file(tmp_path: Path, n: int) -> str:
    """A JSONL trace file of ``n`` records; returns its path as a source spec."""
    path = tmp_path / "traces.jsonl"
    write_jsonl(path, records(n))
    return str(path)


class AnsweringTarget:
    """Answers every request at once with a 2xx, priced by ``tokens`` each way."""

    def __init__(self, arm: str, *, tokens: int = 100) -> None:
        self.arm = arm
        self.tokens = tokens
        self.sent: list[str] = []
        self.closed = 0

    async def send(self, record: TraceRecord, *, due: float) -> Attempt:
        self.sent.append(record.trace_id)
        return Attempt(
            sent_at=time.time(),
            status=200,
            latency_ms=1.0,
            service_ms=1.0,
            model="shadow-large",
            prompt_tokens=self.tokens,
            completion_tokens=self.tokens,
            output_text="an answer",
        )

    async def aclose(self) -> None:
        self.closed += 1


class RaisingTarget(AnsweringTarget):
    """A target with a bug: every send raises RuntimeError."""

    async def send(self, record: TraceRecord, *, due: float) -> Attempt:
        raise RuntimeError(f"bug in the {self.arm} target")


class ListSource:
    """A source that yields the given records once, and remembers what was committed."""

    name = "list"

    def __init__(self, items: Sequence[TraceRecord]) -> None:
        self.items = [SourceItem(record=r, position=("t", 0, i)) for i, r in enumerate(items)]
        self.committed: list[tuple[str, int, int]] = []

    async def __aiter__(self) -> AsyncIterator[SourceItem]:
        for item in self.items:
            yield item

    async def commit(self, positions: Sequence[tuple[str, int, int]]) -> None:
        self.committed.extend(positions)

    async def aclose(self) -> None:
        return None
