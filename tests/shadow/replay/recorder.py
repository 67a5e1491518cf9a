"""A real HTTP server on 127.0.0.1 that records every request exactly as it arrives.

Replay's guards are checked on the wire: the method, the raw request target (before any
server-side normalisation) and every header a replayed request carried. It answers each
request with a small chat completion, so the replayer counts it as a success.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType

from aiohttp import web

__all__ = ["Arrival", "RecordingServer"]

_ANSWER = (
    b'{"id": "r", "object": "chat.completion", "model": "shadow-large", "choices": [{"index": 0,'
    b' "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],'
    b' "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}'
)


@dataclass(frozen=True)
class Arrival:
    """One request as the server saw it."""

    method: str
    target: str
    """The raw request target: path and query as sent."""
    headers: dict[str, str]
    """Header names lower-cased."""
    body: bytes


class RecordingServer:
    """``async with RecordingServer() as server``: ``server.url``, then ``server.arrivals``."""

    def __init__(self) -> None:
        self.arrivals: list[Arrival] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        self.arrivals.append(
            Arrival(
                method=request.method,
                target=request.raw_path,
                headers={k.lower(): v for k, v in request.headers.items()},
                body=await request.read(),
            )
        )
        return web.Response(body=_ANSWER, content_type="application/json")

    async def __aenter__(self) -> RecordingServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def seen(self) -> list[tuple[str, str]]:
        """``(method, target)`` of every arrival, sorted."""
        return sorted((a.method, a.target) for a in self.arrivals)
