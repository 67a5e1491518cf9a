"""Prometheus metrics of one sidecar (its own registry: no global state, several per process)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["DROP_REASONS", "CaptureMetrics"]

DROP_REASONS = ("queue_full", "spool_full", "build_error", "worker_died", "closed")
"""Every ``records_dropped`` reason (docs/architecture.md, "Sidecar overhead")."""
_TEE_COUNTERS = ("records_sent", "records_redelivered", "records_unchecked", "records_spooled",
                 "sink_errors")  # fmt: skip

_ADDED_LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip


class CaptureMetrics:
    """The sidecar's counters, gauges and histograms, exposed at ``<prefix>/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "shadow_capture_requests", "Requests proxied, by status class.", ["status"], registry=r
        )
        self._status = {c: self.requests.labels(c) for c in ("1xx", "2xx", "3xx", "4xx", "5xx")}
        self.request_bytes = Counter(
            "shadow_capture_request_bytes", "Request body bytes proxied.", registry=r
        )
        self.response_bytes = Counter(
            "shadow_capture_response_bytes", "Response body bytes proxied.", registry=r
        )
        self.added_latency = Histogram(
            "shadow_capture_added_latency_seconds",
            "Time the sidecar adds to an exchange: total time minus time waiting on the upstream.",
            buckets=_ADDED_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "shadow_capture_upstream_errors",
            "Exchanges that failed upstream.",
            ["kind"],
            registry=r,
        )
        self.records_sent = Counter(
            "shadow_capture_records_sent",
            "Records the sink acknowledged, each once (a re-delivery is not counted again).",
            registry=r,
        )
        self.records_unconfirmed = Gauge(
            "shadow_capture_records_unconfirmed",
            "Records sent but not yet known to be held by the broker (re-deliveries included).",
            registry=r,
        )
        self.records_redelivered = Counter(
            "shadow_capture_records_redelivered",
            "Sent records the broker was found to have lost, spooled to be delivered again.",
            registry=r,
        )
        self.records_unchecked = Counter(
            "shadow_capture_records_unchecked",
            "Sent records forgotten unconfirmed because the unconfirmed window was full.",
            registry=r,
        )
        self.records_spooled = Counter(
            "shadow_capture_records_spooled", "Records written to the disk spool.", registry=r
        )
        self.records_dropped = Counter(
            "shadow_capture_records_dropped", "Records lost, by reason.", ["reason"], registry=r
        )
        self.records_unsampled = Counter(
            "shadow_capture_records_unsampled", "Exchanges left out by sampling.", registry=r
        )
        self.sink_errors = Counter(
            "shadow_capture_sink_errors", "Failed deliveries to the sink (Kafka).", registry=r
        )
        self.queue_depth = Gauge(
            "shadow_capture_queue_depth", "Exchanges waiting in the in-memory queue.", registry=r
        )
        self.spool_bytes = Gauge(
            "shadow_capture_spool_bytes", "Bytes held in the on-disk spool.", registry=r
        )

    def count_status(self, status: int) -> None:
        """Count one proxied response by its status class."""
        child = self._status.get(f"{status // 100}xx")
        if child is not None:
            child.inc()

    def watch(
        self,
        queue_depth: Callable[[], float],
        spool_bytes: Callable[[], float],
        unconfirmed: Callable[[], float] = lambda: 0.0,
    ) -> None:
        """Read the gauges from live state at scrape time."""
        self.queue_depth.set_function(queue_depth)
        self.spool_bytes.set_function(spool_bytes)
        self.records_unconfirmed.set_function(unconfirmed)

    def tee_counts(self) -> dict[str, float]:
        """The counters the tee keeps, by attribute (``dropped:<reason>`` for drops)."""
        counts = {name: self.value(f"shadow_capture_{name}_total") for name in _TEE_COUNTERS}
        for reason in DROP_REASONS:
            counts[f"dropped:{reason}"] = self.value(
                "shadow_capture_records_dropped_total", reason=reason
            )
        return counts

    def dropped(self) -> int:
        """Records dropped so far, every reason together."""
        return int(
            sum(
                self.value("shadow_capture_records_dropped_total", reason=reason)
                for reason in DROP_REASONS
            )
        )

    def add_tee_counts(self, delta: dict[str, float]) -> None:
        """Add counts another process's tee made (:meth:`tee_counts` differences) to these."""
        for key, n in delta.items():
            if n <= 0:
                continue
            if key.startswith("dropped:"):
                self.records_dropped.labels(key.removeprefix("dropped:")).inc(n)
            else:
                counter: Counter = getattr(self, key)
                counter.inc(n)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)

    def value(self, name: str, **labels: str) -> float:
        """Current value of a sample (for tests and health output); 0 when absent."""
        found = self.registry.get_sample_value(name, labels or None)
        return 0.0 if found is None else found
