"""Capture as ASGI middleware, for teams that would rather not run a sidecar.

Mount it around a Starlette or FastAPI app (``app = CaptureMiddleware(app, sink=...)``, or
``app.add_middleware(CaptureMiddleware, sink=...)``); it sees the same exchanges the sidecar
would, with the same redaction, sampling, slices, tee, spool and sinks. The wrapped app's
responses are never delayed: the middleware copies bytes and reads clocks, nothing more.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from capture.exchange import Exchange, RecordBuilder, TraceIds
from capture.metrics import CaptureMetrics
from capture.redact import Redactor
from capture.sampling import Sampler
from capture.sinks import TraceSink
from capture.slices import SliceExtractor
from capture.spool import Spool
from capture.tee import DrainReport, Tee
from shadow.config import CaptureConfig, RedactionConfig, SliceRule

__all__ = ["CaptureMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = object  # any ASGI callable; typed loosely so Starlette's add_middleware accepts it


class CaptureMiddleware:
    """Tee every HTTP exchange of the wrapped ASGI app to ``sink``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        sink: TraceSink,
        capture: CaptureConfig | None = None,
        redaction: RedactionConfig | None = None,
        slices: Sequence[SliceRule] = (),
        paths: Sequence[str] = ("/v1/",),
    ) -> None:
        self.app = app
        self.config = capture or CaptureConfig()
        self.paths = tuple(paths)
        self.metrics = CaptureMetrics()
        self._ids = TraceIds()
        self.sampler = Sampler(self.config.sampling)
        self.spool = Spool(Path(self.config.spool_dir), max_bytes=self.config.spool_max_bytes)
        self.tee = Tee(
            builder=RecordBuilder(
                redactor=Redactor(redaction),
                slices=SliceExtractor(slices, features=self.config.request_features),
                service=self.config.service,
                sidecar=socket.gethostname(),
            ),
            sink=sink,
            spool=self.spool,
            metrics=self.metrics,
            queue_size=self.config.queue_size,
        )

    async def aclose(self) -> DrainReport:
        """Drain and close the tee (also done on lifespan shutdown); safe to call twice."""
        return await self.tee.aclose(self.config.shutdown_grace_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self.app
        if scope["type"] == "lifespan":
            await app(scope, receive, self._lifespan_send(send))  # type: ignore[operator]
            return
        if (
            scope["type"] != "http"
            or not scope["path"].startswith(self.paths)
            or not self.sampler.sample_raw(scope["headers"])
        ):
            await app(scope, receive, send)  # type: ignore[operator]
            return
        self.tee.start()
        ex = Exchange(
            trace_id=self._ids.next(),
            started_ns=time.time_ns(),
            t0=time.perf_counter(),
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            request_headers=scope["headers"],
            cap=self.config.body_cap_bytes,
        )

        async def tee_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                ex.request_body.add(message.get("body", b""))
            return message

        async def tee_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                ex.start_response(message["status"], list(message.get("headers", [])))
                self.metrics.count_status(message["status"])
            elif message["type"] == "http.response.body":
                ex.add_response_chunk(message.get("body", b""))
            await send(message)

        try:
            await app(scope, tee_receive, tee_send)  # type: ignore[operator]
        except Exception:
            ex.error = "app_error"
            raise
        finally:
            ex.finish()
            self.tee.submit(ex)

    def _lifespan_send(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                self.tee.start()
            elif message["type"] == "lifespan.shutdown.complete":
                await self.aclose()
            await send(message)

        return wrapped
