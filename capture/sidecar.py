"""The capture sidecar as one ASGI app: the proxy, the tee, and the admin endpoints.

``<admin_prefix>/metrics`` (Prometheus text) and ``<admin_prefix>/health`` (JSON) are answered
by the sidecar itself; every other path goes to the upstream. The prefix (``/shadow`` by
default) is configurable so it never hides an upstream route. They are served on the proxy's
own listener, so whoever can send traffic through the sidecar can read them: they hold counts,
the upstream's address (without userinfo) and the sink's name, never a record or a header
value (docs/security.md, "Threat model").
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from pathlib import Path

import msgspec

from capture.exchange import RecordBuilder
from capture.metrics import CaptureMetrics
from capture.proxy import Forwarder, Receive, Scope, Send
from capture.redact import Redactor
from capture.sampling import Sampler
from capture.sinks import TraceSink
from capture.slices import SliceExtractor
from capture.spool import Spool
from capture.tee import DrainReport, Tee
from capture.worker import BuildWorker
from shadow.config import CaptureConfig, Config, RedactionConfig, SliceRule

__all__ = ["Sidecar"]

log = logging.getLogger("shadow.capture")

_TEXT = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]
_JSON = [(b"content-type", b"application/json")]


class Sidecar:
    """Transparent reverse proxy to one upstream that tees every exchange to a sink."""

    def __init__(
        self,
        *,
        capture: CaptureConfig,
        sink: TraceSink,
        redaction: RedactionConfig | None = None,
        slices: Sequence[SliceRule] = (),
        kafka_key: str = "trace_id",
    ) -> None:
        if not capture.upstream:
            raise ValueError("capture.upstream is not set; it must be the URL of the live upstream")
        self.config = capture
        self.metrics = CaptureMetrics()
        self.forwarder = Forwarder(
            capture.upstream,
            metrics=self.metrics,
            connect_timeout_s=capture.connect_timeout_s,
            read_timeout_s=capture.read_timeout_s,
            body_cap=capture.body_cap_bytes,
            ca_file=capture.upstream_ca_file,
        )
        self.sampler = Sampler(capture.sampling)
        builder = RecordBuilder(
            redactor=Redactor(redaction),
            slices=SliceExtractor(slices, features=capture.request_features),
            service=capture.service,
            sidecar=socket.gethostname(),
            key_header=kafka_key.removeprefix("header:") if kafka_key != "trace_id" else "",
        )
        self.spool = Spool(Path(capture.spool_dir), max_bytes=capture.spool_max_bytes)
        self.tee = Tee(
            builder=builder,
            sink=sink,
            spool=self.spool,
            metrics=self.metrics,
            queue_size=capture.queue_size,
            worker=BuildWorker(builder, self.metrics),
        )
        prefix = capture.admin_prefix.rstrip("/")
        self._metrics_path = prefix + "/metrics"
        self._health_path = prefix + "/health"
        self._started = False

    @classmethod
    def from_config(cls, config: Config, sink: TraceSink) -> Sidecar:
        """Build from a loaded ``shadow.toml``."""
        return cls(
            capture=config.capture,
            sink=sink,
            redaction=config.redaction,
            slices=config.slices,
            kafka_key=config.kafka.key,
        )

    async def start(self) -> None:
        """Open the upstream pool and start the tee (call on the serving loop)."""
        if not self._started:
            await self.forwarder.start()
            if self.tee.worker is not None:
                await self.tee.worker.start()
            self.tee.start()
            self._started = True

    async def aclose(self) -> DrainReport:
        """Drain the tee within the grace period, close everything; safe to call twice."""
        report = await self.tee.aclose(self.config.shutdown_grace_s)
        await self.forwarder.aclose()
        self._started = False
        return report

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            if path == self._metrics_path:
                await _respond(send, 200, self.metrics.render(), _TEXT)
            elif path == self._health_path:
                await _respond(send, 200, self._health(), _JSON)
            else:
                await self._proxy(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _proxy(self, scope: Scope, receive: Receive, send: Send) -> None:
        capture = self.sampler.sample_raw(scope["headers"])
        if not capture:
            self.metrics.records_unsampled.inc()
        exchange = await self.forwarder.handle(scope, receive, send, capture=capture)
        if exchange is not None:
            self.tee.submit(exchange)

    def _health(self) -> bytes:
        return msgspec.json.encode(
            {
                "status": "ok",
                "upstream": str(self.forwarder.upstream.with_user(None)),  # no userinfo
                "sink": self.tee.sink.name,
                "delivery": "spooling" if self.tee.spooling else "direct",
                "queue_depth": self.tee.queue_depth,
                "spool_bytes": self.spool.bytes_on_disk,
                "records_sent": self.tee.sent,
                "records_unconfirmed": self.tee.unconfirmed,
            }
        )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                report = await self.aclose()
                log.info("capture stopped: %s", report)
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
