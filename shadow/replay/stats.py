"""The running figures of a replay or mirror: per arm and for the whole run.

The fan-out (:mod:`shadow.replay.scheduler`) updates them as sends finish; the live display,
the Prometheus endpoint and the final summary read them. A live mirror runs for days, so it
keeps only a window of the newest lags and latencies (``window``); a replay keeps them all.

Schedule lag is the figure the results table stores, ``(sent_at − scheduled_at) × 1000`` of
each first attempt that was sent, on every arm the run sends to (docs/architecture.md, "Metric
definitions"), so the summary's lag percentiles are what anyone recomputes from the rows.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

__all__ = ["LATE_MS", "ArmStats", "ReplayStats"]

LATE_MS = 5.0
"""A first attempt whose schedule lag exceeds this many ms is counted as late."""


@dataclass
class ArmStats:
    """Running figures for one arm."""

    sent: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0
    """Attempts that reported tokens but whose model has no price (their cost is unknown)."""
    window: int | None = None
    """Keep only the last ``window`` latencies (a live mirror runs for days); None keeps all."""
    latencies_ms: deque[float] = field(init=False)

    def __post_init__(self) -> None:
        self.latencies_ms = deque(maxlen=self.window)

    def count_error(self, error: str) -> None:
        """Count one attempt that ended with ``error``."""
        self.errors[error] = self.errors.get(error, 0) + 1

    def latency_percentile(self, q: float, last: int | None = None) -> float | None:
        """Latency percentile in ms over the kept sends (the last ``last`` when given)."""
        return _percentile(self.latencies_ms, q, last)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready summary (percentiles over the kept attempts that have a latency)."""
        lat = np.asarray(self.latencies_ms)
        return {
            "sent": self.sent,
            "ok": self.ok,
            "ok_rate": self.ok / self.sent if self.sent else None,
            "errors": dict(sorted(self.errors.items())),
            "skipped": self.skipped,
            "cost_usd": round(self.cost_usd, 6),
            "unpriced": self.unpriced,
            "latency_p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
            "latency_p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
        }


@dataclass
class ReplayStats:
    """Running figures for a whole replay, read by the progress display and the summary."""

    run_id: str
    total: int
    scheduled: int = 0
    in_flight: int = 0
    late: int = 0
    skipped_path: int = 0
    """Records the route allow-list refused: no route has their (normalised) path."""
    skipped_method: int = 0
    """... routes have their path, none their method."""
    skipped_path_escape: int = 0
    """... their path climbs out of its prefix with ``..`` (shadow.wire.routes)."""
    skipped_body: int = 0
    """... their request body was not captured whole (cut at the cap, or not decodable)."""
    skipped_untranslatable: int = 0
    """Records an arm's ``format`` cannot express (shadow.wire.translate), sent to no arm."""
    untranslatable: dict[str, int] = field(default_factory=dict)
    """``skipped_untranslatable`` by what could not be translated (``n > 1``, ...)."""
    skipped_done: int = 0
    stopped_early: bool = False
    budget_exhausted: bool = False
    budget_unenforceable: str | None = None
    """Why the budget could not be enforced (a model without a price), when that stopped it."""
    unpriced_models: dict[str, int] = field(default_factory=dict)
    """Attempts per model name that reported tokens but had no price (shadow.replay.budget)."""
    window: int | None = None
    """Keep only the last ``window`` lags and latencies per arm; None keeps all (a replay)."""
    lags_ms: deque[float] = field(init=False)
    """The schedule lag of every first attempt sent, as stored (:meth:`count_lag`)."""
    arms: dict[str, ArmStats] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None

    def __post_init__(self) -> None:
        self.lags_ms = deque(maxlen=self.window)

    def arm(self, name: str) -> ArmStats:
        """The stats of one arm (created on first use)."""
        stats = self.arms.get(name)
        if stats is None:
            stats = self.arms[name] = ArmStats(window=self.window)
        return stats

    @property
    def cost_usd(self) -> float:
        """Cost of every attempt so far, all arms."""
        return sum(a.cost_usd for a in self.arms.values())

    def count_lag(self, scheduled_at: float, sent_at: float) -> None:
        """Count one sent first attempt: its stored lag ``(sent_at − scheduled_at) × 1000`` ms.

        The same arithmetic on the same floats as the results' ``lag_ms``, so the figures agree
        exactly; above :data:`LATE_MS` it is late.
        """
        lag_ms = (sent_at - scheduled_at) * 1000
        self.lags_ms.append(lag_ms)
        if lag_ms > LATE_MS:
            self.late += 1

    def count_skip(self, reason: str, detail: str | None = None) -> None:
        """Count one record the route allow-list refused, by reason (``skipped_path`` ...), or
        one that could not be translated (``skipped_untranslatable``, with its ``detail``)."""
        if reason == "skipped_untranslatable":
            self.skipped_untranslatable += 1
            key = detail or "unknown"
            self.untranslatable[key] = self.untranslatable.get(key, 0) + 1
        elif reason == "skipped_method":
            self.skipped_method += 1
        elif reason == "skipped_body":
            self.skipped_body += 1
        elif reason == "skipped_path_escape":
            self.skipped_path_escape += 1
        else:
            self.skipped_path += 1

    def lag_percentile(self, q: float, last: int | None = None) -> float | None:
        """Schedule lag percentile in ms (over the last ``last`` sends when given)."""
        return _percentile(self.lags_ms, q, last)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready summary of the run."""
        elapsed = (self.ended or time.monotonic()) - self.started
        lags = np.asarray(self.lags_ms)
        return {
            "run_id": self.run_id,
            "records": self.total,
            "scheduled": self.scheduled,
            "elapsed_s": round(elapsed, 3),
            "late": self.late,
            "lag_p50_ms": float(np.percentile(lags, 50)) if lags.size else None,
            "lag_p99_ms": float(np.percentile(lags, 99)) if lags.size else None,
            "lag_max_ms": float(lags.max()) if lags.size else None,
            "skipped_path": self.skipped_path,
            "skipped_method": self.skipped_method,
            "skipped_path_escape": self.skipped_path_escape,
            "skipped_body": self.skipped_body,
            "skipped_untranslatable": self.skipped_untranslatable,
            "untranslatable": dict(sorted(self.untranslatable.items())),
            "skipped_done": self.skipped_done,
            "stopped_early": self.stopped_early,
            "budget_exhausted": self.budget_exhausted,
            "budget_unenforceable": self.budget_unenforceable,
            "unpriced_models": dict(sorted(self.unpriced_models.items())),
            "cost_usd": round(self.cost_usd, 6),
            "arms": {name: stats.as_dict() for name, stats in sorted(self.arms.items())},
        }


def _percentile(values: deque[float], q: float, last: int | None) -> float | None:
    """Percentile of the newest ``last`` values (all when None); None when there are none."""
    if not values:
        return None
    recent = list(itertools.islice(reversed(values), last)) if last else values
    return float(np.percentile(np.asarray(recent), q))
