"""Opening the first sends' connections before the first send, without sending a byte."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import TracebackType

from shadow.config import ArmConfig
from shadow.replay.pricing import DEFAULT_PRICES, PricingTable
from shadow.replay.replayer import Replayer
from shadow.replay.scheduler import FanOut
from shadow.replay.sources import SourceItem
from shadow.replay.targets import HttpTarget
from shadow.results.store import ResultsStore
from shadow.results.writer import AsyncResultsWriter
from tests.shadow.replay.fakes import AnsweringTarget, records

NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing listens on it here

_ANSWER = (
    b'{"id": "r", "object": "chat.completion", "model": "shadow-large", "choices": [{"index": 0,'
    b' "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}'
)


class CountingServer:
    """A minimal keep-alive HTTP/1.1 server on 127.0.0.1 that counts connections, requests and
    every byte received (``async with CountingServer() as server``: ``server.url``)."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        self.received = 0
        self.closed = 0
        self._changed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def until(self, *, connections: int = 0, closed: int = 0) -> None:
        """Wait (5 s at most) until this many connections were accepted, and closed."""

        async def reached() -> None:
            while self.connections < connections or self.closed < closed:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(reached(), 5.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._changed.set()
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as eof:
                    self.received += len(eof.partial)
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                self.received += len(head) + len(body)
                self.requests += 1
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(_ANSWER), _ANSWER)
                )
                await writer.drain()
        finally:
            self.closed += 1
            self._changed.set()
            writer.close()

    async def __aenter__(self) -> CountingServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()


async def test_preconnect_opens_connections_and_sends_nothing() -> None:
    """Three connections are accepted and closed again with not one byte received."""
    async with CountingServer() as server:
        target = HttpTarget("baseline", ArmConfig(url=server.url))
        assert await target.preconnect(3, 5.0) == 3
        await server.until(connections=3)
        await target.aclose()
        await server.until(connections=3, closed=3)
    assert (server.connections, server.requests, server.received) == (3, 0, 0)


async def test_the_first_sends_use_the_opened_connections() -> None:
    """Three concurrent sends after preconnect(3) open no connection of their own."""
    async with CountingServer() as server:
        target = HttpTarget("baseline", ArmConfig(url=server.url))
        assert await target.preconnect(3, 5.0) == 3
        await server.until(connections=3)
        record = records(1)[0]
        attempts = await asyncio.gather(
            *(target.send(record, due=time.perf_counter()) for _ in range(3))
        )
        await target.aclose()
    assert all(a.http_ok for a in attempts), [a.error for a in attempts]
    assert (server.connections, server.requests) == (3, 3)


async def test_preconnect_opens_no_more_than_the_connection_limit() -> None:
    """An arm limited to two connections opens two, and does not wait for a third."""
    async with CountingServer() as server:
        target = HttpTarget("baseline", ArmConfig(url=server.url), max_connections=2)
        started = time.perf_counter()
        assert await target.preconnect(5, 5.0) == 2
        waited = time.perf_counter() - started
        await server.until(connections=2)
        await target.aclose()
    assert server.connections == 2
    assert waited < 4.0  # it returned, rather than waiting out the time it was given


async def test_preconnect_to_nothing_opens_nothing_and_does_not_raise() -> None:
    """Refused connections leave the pool empty; the sends report the failure as usual."""
    target = HttpTarget("baseline", ArmConfig(url=NOWHERE))
    try:
        assert await target.preconnect(4, 5.0) == 0
        attempt = await target.send(records(1)[0], due=time.perf_counter())
    finally:
        await target.aclose()
    assert attempt.error == "connect"


class PreconnectingTarget(AnsweringTarget):
    """Notes each preconnect (count, time budget) and whether anything was sent before it."""

    def __init__(self, arm: str) -> None:
        super().__init__(arm)
        self.preconnects: list[tuple[int, float, int]] = []
        self.opened_at: list[float] = []  # loop time of each preconnect

    async def preconnect(self, count: int, timeout_s: float) -> int:
        self.preconnects.append((count, timeout_s, len(self.sent)))
        self.opened_at.append(asyncio.get_running_loop().time())
        return count


async def _replay(
    tmp_path: Path,
    offsets: list[float],
    targets: dict[str, AnsweringTarget],
    start: float | None = None,
) -> None:
    store = ResultsStore.open(tmp_path / "run.duckdb")
    store.start_run("p", source="test", config={}, arms=list(targets))
    writer = AsyncResultsWriter(store)
    fanout = FanOut(
        run_id="p", targets=dict(targets), writer=writer, pricing=PricingTable(DEFAULT_PRICES)
    )
    loaded = records(len(offsets))
    replayer = Replayer(
        fanout,
        items=[SourceItem(record=r, position=None) for r in loaded],
        offsets=offsets,
        start=start,
    )
    await replayer.run()
    await writer.aclose()
    store.close()


async def test_each_arm_opens_the_first_100_ms_worth_before_the_first_send(
    tmp_path: Path,
) -> None:
    """Records 10 ms apart: 10 fall in the first 100 ms, so each arm opens 10, once, before
    anything is sent, given 250 ms (with no agreed start it begins after them); an arm without
    preconnect is fine."""
    targets: dict[str, AnsweringTarget] = {
        "baseline": PreconnectingTarget("baseline"),
        "candidate": AnsweringTarget("candidate"),
    }
    await _replay(tmp_path, [i * 0.01 for i in range(30)], targets)
    baseline = targets["baseline"]
    assert isinstance(baseline, PreconnectingTarget)
    assert len(baseline.preconnects) == 1
    count, budget, sent_before = baseline.preconnects[0]
    assert (count, sent_before) == (10, 0)
    assert budget == 0.25
    assert len(baseline.sent) == len(targets["candidate"].sent) == 30


async def test_a_dense_start_opens_at_most_16(tmp_path: Path) -> None:
    """A thousand records in the first 100 ms still open no more than 16 connections per arm."""
    target = PreconnectingTarget("baseline")
    await _replay(tmp_path, [i * 0.0001 for i in range(1000)], {"baseline": target})
    assert [count for count, _, _ in target.preconnects] == [16]


async def test_with_an_agreed_start_the_connections_open_250_ms_before_it(
    tmp_path: Path,
) -> None:
    """With a start a second away (--start-at) the connections are opened 250 ms before it,
    with that long (less a margin) to open, and the first send is after them."""
    target = PreconnectingTarget("baseline")
    loop = asyncio.get_running_loop()
    start = loop.time() + 1.0
    await _replay(tmp_path, [0.0, 0.01], {"baseline": target}, start=start)
    [(count, budget, sent_before)] = target.preconnects
    assert (count, sent_before) == (2, 0)
    assert 0.1 < budget <= 0.25  # a loaded machine may wake it a little late
    assert 0.1 < start - target.opened_at[0] <= 0.26
    assert len(target.sent) == 2
