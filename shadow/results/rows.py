"""Result rows: what one attempt on one arm measured, and the trace it replayed.

A :class:`ResultRow` is a row of the ``results`` table, a :class:`TraceRow` a row of
``traces`` (docs/architecture.md, "Results"); a :class:`ResultsSink` is anything that takes
them durably (the DuckDB file store or the Parquet directory writer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol, runtime_checkable

from shadow.trace.record import TraceRecord

__all__ = ["ARMS", "ResultRow", "ResultsSink", "StagingSink", "TraceRow"]

ARMS: Final = frozenset({"baseline", "candidate", "baseline_repeat", "production"})


@dataclass(frozen=True, kw_only=True, slots=True)
class ResultRow:
    """One attempt of one trace on one arm (docs/architecture.md, "Metric definitions").

    ``scheduled_at`` and ``sent_at`` are epoch seconds; ``ttft_ms`` and ``latency_ms`` count
    from the scheduled send, ``service_ms`` from the actual send. ``attempt`` 0 is the first try.
    """

    run_id: str
    trace_id: str
    arm: str
    attempt: int = 0
    slices: Mapping[str, str] = field(default_factory=dict)
    scheduled_at: float
    sent_at: float | None = None
    ttft_ms: float | None = None
    latency_ms: float | None = None
    service_ms: float | None = None
    status: int | None = None
    ok: bool
    error: str | None = None
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    cost_usd: float | None = None
    output_text: str | None = None
    chunk_offsets_ms: Sequence[float] | None = None
    cache_write_tokens: int | None = None
    """Prompt tokens written to the provider's prompt cache (part of ``prompt_tokens``)."""

    def __post_init__(self) -> None:
        if self.arm not in ARMS:
            raise ValueError(f"arm is {self.arm!r}; it must be one of {sorted(ARMS)}")
        if self.attempt < 0:
            raise ValueError(f"attempt is {self.attempt}; it must be >= 0 (0 = first try)")


@dataclass(frozen=True, kw_only=True, slots=True)
class TraceRow:
    """One replayed trace as production saw it (a row of ``traces``)."""

    run_id: str
    trace_id: str
    captured_at: int
    """UTC epoch nanoseconds of the first request byte."""
    service: str
    slices: Mapping[str, str] = field(default_factory=dict)
    method: str
    path: str
    request_body: str | None = None
    production_status: int | None = None
    production_latency_ms: float | None = None
    production_model: str | None = None

    @classmethod
    def from_record(cls, record: TraceRecord, *, run_id: str) -> TraceRow:
        """The row for ``record`` in run ``run_id`` (a binary request body is left out)."""
        return cls(
            run_id=run_id,
            trace_id=record.trace_id,
            captured_at=record.captured_at,
            service=record.service,
            slices=record.slices,
            method=record.request.method,
            path=record.request.path,
            request_body=record.request.body,
            production_status=record.response.status if record.response else None,
            production_latency_ms=record.timing.latency_ms,
            production_model=record.usage.model if record.usage else None,
        )


class ResultsSink(Protocol):
    """Where result rows go: a ResultsStore or a ParquetResultsWriter."""

    def write(self, results: Sequence[ResultRow], traces: Sequence[TraceRow] = ()) -> None:
        """Write the rows durably in one go; rewriting a key replaces its row."""


@runtime_checkable
class StagingSink(ResultsSink, Protocol):
    """A sink that takes rows encoded as they come (:class:`~shadow.results.process.ProcessSink`).

    :meth:`stage` turns a few rows into bytes at once (microseconds per row, on the caller's
    thread); :meth:`write_staged` writes many such pieces durably in one go.
    """

    def stage(self, results: Sequence[ResultRow], traces: Sequence[TraceRow] = ()) -> bytes:
        """The rows, encoded for :meth:`write_staged`."""

    def write_staged(self, pieces: Sequence[bytes]) -> None:
        """Write the rows of every piece durably in one go; rewriting a key replaces its row."""
