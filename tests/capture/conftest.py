"""Real parts for capture tests: a recording upstream and sidecars on ephemeral ports."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from capture.live.serve import LiveServer
from capture.sidecar import Sidecar
from capture.sinks import FileSink, TraceSink
from shadow.config import CaptureConfig, RedactionConfig
from shadow.serving import BackgroundServer
from shadow.sim import FaultConfig, MockLLM
from shadow.trace.jsonl import read_jsonl
from shadow.trace.record import TraceRecord


@dataclass
class Seen:
    """What the upstream saw of one request and what it sent back."""

    headers: dict[str, str]
    path: str
    query: bytes
    body: bytearray = field(default_factory=bytearray)
    status: int | None = None
    response: bytearray = field(default_factory=bytearray)
    complete: bool = False
    disconnected: bool = False


class Recorder:
    """ASGI wrapper that records each request (keyed by ``x-test-id``) as the upstream saw it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: dict[str, Seen] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        entry = Seen(headers=headers, path=scope["path"], query=scope["query_string"])
        self.seen[headers.get("x-test-id", f"anon-{len(self.seen)}")] = entry
        body_done = asyncio.Event()

        async def rec_receive() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                entry.body += message.get("body", b"")
                if not message.get("more_body", False):
                    body_done.set()
            return message

        async def watch() -> None:
            await body_done.wait()
            while (await receive())["type"] != "http.disconnect":
                pass
            if not entry.complete:
                entry.disconnected = True

        async def rec_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                entry.status = message["status"]
            elif message["type"] == "http.response.body":
                entry.response += message.get("body", b"")
                if not message.get("more_body", False):
                    entry.complete = True
            await send(message)

        watcher = asyncio.create_task(watch())
        try:
            await self.app(scope, rec_receive, rec_send)
        finally:
            if entry.complete:
                watcher.cancel()
            else:
                await asyncio.wait({watcher}, timeout=5)


@pytest.fixture
def make_upstream() -> Iterator[Callable[..., tuple[BackgroundServer, Recorder]]]:
    """Start recording mock-llm upstreams; all are stopped at the end of the test."""
    servers: list[BackgroundServer] = []

    def make(
        profile: str = "large", *, time_scale: float = 0.0, faults: FaultConfig | None = None
    ) -> tuple[BackgroundServer, Recorder]:
        recorder = Recorder(MockLLM(profile, seed=3, time_scale=time_scale, faults=faults))
        server = BackgroundServer(recorder, timeout_graceful_shutdown=1)
        server.start()
        servers.append(server)
        return server, recorder

    yield make
    for server in servers:
        server.stop()


@dataclass
class RunningSidecar:
    server: LiveServer
    app: Sidecar
    out: Path

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        """Stop the sidecar; stopping drains the tee into the sink."""
        self.server.stop()

    def records(self) -> list[TraceRecord]:
        """The records the file sink holds (stop first so the tee is drained)."""
        return list(read_jsonl(self.out)) if self.out.exists() else []


@pytest.fixture
def make_sidecar(tmp_path: Path) -> Iterator[Callable[..., RunningSidecar]]:
    """Start capture sidecars (file sink unless one is given) on free ports."""
    running: list[RunningSidecar] = []

    def make(
        upstream: str,
        *,
        sink: TraceSink | None = None,
        redaction: RedactionConfig | None = None,
        name: str = "sidecar",
        tee_on_loop: bool = False,
        **capture: Any,
    ) -> RunningSidecar:
        out = tmp_path / f"{name}-{len(running)}.jsonl"
        config = CaptureConfig(
            upstream=upstream, spool_dir=str(tmp_path / f"{name}-{len(running)}-spool"), **capture
        )
        app = Sidecar(
            capture=config, sink=sink or FileSink(out), redaction=redaction, tee_on_loop=tee_on_loop
        )
        server = LiveServer(app)  # what `shadow capture` serves it with
        server.start()
        sidecar = RunningSidecar(server, app, out)
        running.append(sidecar)
        return sidecar

    yield make
    for sidecar in running:
        sidecar.stop()
