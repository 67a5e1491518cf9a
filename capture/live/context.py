"""What the live path's connections of one listener share, and what they offer the listener."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from capture.exchange import Exchange, TraceIds
from capture.live.upstream import Upstream
from capture.metrics import CaptureMetrics

__all__ = ["Connection", "Context"]


class Connection(Protocol):
    """A client connection, as the listener sees it when stopping."""

    def close(self) -> None: ...

    def close_if_idle(self) -> bool: ...


@dataclass(eq=False, kw_only=True)
class Context:
    """The upstream, metrics, sampling, tee and admin endpoints one listener serves with."""

    upstream: Upstream
    metrics: CaptureMetrics
    sample: Callable[[list[tuple[bytes, bytes]]], bool]
    submit: Callable[[Exchange], None]
    admin: Callable[[bytes], tuple[bytes, list[tuple[bytes, bytes]]] | None]
    body_cap: int
    scheme: str = "http"
    ids: TraceIds = field(default_factory=TraceIds)
    connections: set[Connection] = field(default_factory=set)
    stopping: bool = False
    drained: asyncio.Event | None = None
    """Set when the last connection closes after :attr:`stopping` (graceful shutdown)."""
