"""The capture sidecar: the live path's settings, the tee, and the admin endpoints.

:class:`Sidecar` owns the metrics, sampler, tee and the upstream's connection pool;
:class:`capture.live.serve.LiveServer` serves it (``shadow capture`` does). With a sink that
can move (``process_safe``: Kafka, a file) the tee runs in the record worker process
(:class:`capture.worker.ProcessTee`): the serving loop only hands exchanges over. With any
other sink, or ``tee_on_loop=True``, the tee runs on the serving loop.
``<admin_prefix>/metrics`` (Prometheus text) and ``<admin_prefix>/health`` (JSON) are
answered by the sidecar itself; every other path goes to the upstream. The prefix
(``/shadow`` by default) is configurable so it never hides an upstream route. They are
served on the proxy's own listener, so whoever can send traffic through the sidecar can read
them: they hold counts, the upstream's address (without userinfo) and the sink's name, never
a record or a header value (docs/security.md, "Threat model").
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path

import msgspec

from capture.exchange import RecordBuilder
from capture.live.context import Context
from capture.live.upstream import Upstream
from capture.metrics import CaptureMetrics
from capture.redact import Redactor
from capture.sampling import Sampler
from capture.sinks import TraceSink
from capture.slices import SliceExtractor
from capture.spool import Spool
from capture.tee import DrainReport, Tee
from capture.worker import ProcessTee
from shadow.config import CaptureConfig, Config, RedactionConfig, SliceRule

__all__ = ["Sidecar"]

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
        tee_on_loop: bool = False,
    ) -> None:
        if not capture.upstream:
            raise ValueError("capture.upstream is not set; it must be the URL of the live upstream")
        self.config = capture
        self.metrics = CaptureMetrics()
        self.upstream = Upstream(
            capture.upstream,
            connect_timeout_s=capture.connect_timeout_s,
            read_timeout_s=capture.read_timeout_s,
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
        spool = Spool(Path(capture.spool_dir), max_bytes=capture.spool_max_bytes)
        self.tee: Tee | ProcessTee
        if getattr(sink, "process_safe", False) and not tee_on_loop:
            spool.close()  # it opened: the worker process takes it over
            self.tee = ProcessTee(
                builder=builder,
                sink=sink,
                spool_dir=capture.spool_dir,
                spool_max_bytes=capture.spool_max_bytes,
                metrics=self.metrics,
                queue_size=capture.queue_size,
                orphan_grace_s=capture.shutdown_grace_s,
                priority=capture.worker_priority,
                cpus=capture.worker_cpus,
            )
        else:
            self.tee = Tee(
                builder=builder,
                sink=sink,
                spool=spool,
                metrics=self.metrics,
                queue_size=capture.queue_size,
            )
        prefix = capture.admin_prefix.rstrip("/").encode("latin-1")
        self._metrics_path = prefix + b"/metrics"
        self._health_path = prefix + b"/health"
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
        """Start the tee (call on the serving loop)."""
        if not self._started:
            if isinstance(self.tee, ProcessTee):
                await self.tee.start()
            else:
                self.tee.start()
            self._started = True

    async def aclose(self) -> DrainReport:
        """Drain the tee within the grace period, close everything; safe to call twice."""
        report = await self.tee.aclose(self.config.shutdown_grace_s)
        self.upstream.close()
        self._started = False
        return report

    def context(self, scheme: str) -> Context:
        """What the live path's connections share, for a listener serving ``scheme``."""
        return Context(
            upstream=self.upstream,
            metrics=self.metrics,
            sample=self.sampler.sample_raw,
            submit=self.tee.submit,
            admin=self.admin,
            body_cap=self.config.body_cap_bytes,
            scheme=scheme,
        )

    def admin(self, path: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
        """The body and headers of an admin endpoint at ``path``; None for any other path."""
        if path == self._metrics_path:
            return self.metrics.render(), _TEXT
        if path == self._health_path:
            return self._health(), _JSON
        return None

    def _health(self) -> bytes:
        return msgspec.json.encode(
            {
                "status": "ok",
                "upstream": self.upstream.display,  # no userinfo
                "sink": self.tee.sink_name,
                "delivery": "spooling" if self.tee.spooling else "direct",
                "queue_depth": self.tee.queue_depth,
                "spool_bytes": self.tee.spool_bytes,
                "records_sent": self.tee.sent,
                "records_unconfirmed": self.tee.unconfirmed,
            }
        )
