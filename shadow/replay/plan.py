"""What a replay will send and when: the schedule, its shard, its resumed remainder, a dry run.

A :class:`ReplayPlan` pairs the loaded records (sorted by ``captured_at``) with their due
offsets, from the recorded gaps / speed or from a synthetic arrival process
(:mod:`shadow.replay.pacing`). Several processes split one schedule with :meth:`~ReplayPlan.shard`
(each keeps every N-th record and its offset, so with the same start they share one global
rate); a resumed run keeps what is left with :meth:`~ReplayPlan.resume`, re-timed to start now.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from shadow.config import ArmConfig
from shadow.errors import UsageError
from shadow.replay.pacing import Arrival, recorded_schedule, synthetic_schedule
from shadow.replay.sources import SourceItem
from shadow.replay.targets import RefusedRequest, build_request, unsent_headers
from shadow.trace.record import TraceRecord
from shadow.wire.routes import RouteAllowList

__all__ = ["DryRun", "DryRunRow", "Pacing", "ReplayPlan"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Pacing:
    """How records are timed: recorded gaps / ``speed``, or synthetic arrivals at ``rate``/s.

    Synthetic arrivals apply when ``rate`` or ``ramp`` is given (a ramp alone starts at 1/s).
    Values are checked when the offsets are computed (:mod:`shadow.replay.pacing`'s errors
    name the setting: ``rate has value 0; it must be > 0``).
    """

    speed: float = 1.0
    rate: float | None = None
    arrival: Arrival = "poisson"
    burstiness: float = 1.0
    ramp: tuple[float, float, float] | None = None

    @property
    def synthetic(self) -> bool:
        """Whether recorded times are ignored (load-test mode)."""
        return self.rate is not None or self.ramp is not None

    def offsets(self, items: Sequence[SourceItem]) -> npt.NDArray[np.float64]:
        """The due offset of each item, in seconds from the start."""
        if self.synthetic:
            return synthetic_schedule(
                len(items),
                rate=self.rate if self.rate is not None else 1.0,
                arrival=self.arrival,
                burstiness=self.burstiness,
                ramp=self.ramp,
            )
        return recorded_schedule([i.record.captured_at for i in items], speed=self.speed)


@dataclass(frozen=True, slots=True)
class DryRunRow:
    """One record a dry run would send."""

    offset_s: float
    trace_id: str
    path: str
    slices: str


@dataclass(frozen=True, kw_only=True, slots=True)
class DryRun:
    """What a replay would send, without sending anything."""

    rows: list[DryRunRow]
    """What is sent, each row with the normalised path it goes to."""
    skipped: int
    """Records the route allow-list refuses."""
    arms: tuple[str, ...]
    duration_s: float
    headers_dropped: list[str]
    """Captured headers (of the first record) that are never replayed."""
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    """``skipped`` by reason (``skipped_path``, ``skipped_method``, ``skipped_path_escape``,
    ``skipped_body``)."""

    def lines(self) -> list[str]:
        """The plan as the text ``shadow replay --dry-run`` prints: a table, then a total."""
        lines = [f"{'due (s)':>10}  {'trace_id':<32} {'path':<24} {'slices'}"]
        lines += [
            f"{r.offset_s:>10.3f}  {r.trace_id:<32} {r.path:<24} {r.slices}" for r in self.rows
        ]
        reasons = ", ".join(f"{k}: {n}" for k, n in sorted(self.skipped_by_reason.items()))
        lines.append(
            f"{len(self.rows)} records to {', '.join(self.arms)} over {self.duration_s:.1f} s; "
            f"{self.skipped} skipped ({reasons or 'none'}); "
            f"headers not replayed: {', '.join(self.headers_dropped) or '-'}"
        )
        return lines


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """The records of a replay, their due offsets (seconds) and the arms each goes to."""

    items: Sequence[SourceItem]
    offsets: npt.NDArray[np.float64]
    arms: tuple[str, ...]

    @classmethod
    def build(
        cls, items: Sequence[SourceItem], *, pacing: Pacing, arms: Sequence[str]
    ) -> ReplayPlan:
        """Time ``items`` (sorted by ``captured_at``) by ``pacing``."""
        return cls(items, pacing.offsets(items), tuple(arms))

    def shard(self, index: int, count: int) -> ReplayPlan:
        """Records ``index``, ``index + count``, ... with their offsets unchanged."""
        if not 0 <= index < count:
            raise UsageError(
                f"shard has value {index}/{count}; it must be I/N with 0 <= I < N",
                setting="shard",
            )
        return ReplayPlan(self.items[index::count], self.offsets[index::count], self.arms)

    def resume(self, done: set[tuple[str, str]]) -> ReplayPlan:
        """What is left after ``done`` (trace, arm) pairs keeps its relative timing, from now.

        The first record with an arm still to send becomes due at offset 0; earlier ones,
        already answered, are skipped by the replayer.
        """
        if not done:
            return self
        remaining = [
            i
            for i, item in enumerate(self.items)
            if any((item.record.trace_id, arm) not in done for arm in self.arms)
        ]
        if not remaining:
            return self
        offsets = self.offsets - self.offsets[remaining[0]]
        offsets[offsets < 0] = 0.0
        return ReplayPlan(self.items, offsets, self.arms)

    def dry_run(
        self,
        routes: RouteAllowList | None = None,
        pass_headers: Sequence[str] = (),
        arms: Mapping[str, ArmConfig] | None = None,
    ) -> DryRun:
        """What this plan would send, given the route allow-list (default: the default one) and
        the arms (a record an arm's ``format`` cannot translate is ``skipped_untranslatable``,
        sent to no arm, as in the replay)."""
        allow = routes if routes is not None else RouteAllowList()
        rows: list[DryRunRow] = []
        reasons: dict[str, int] = {}
        for item, offset in zip(self.items, self.offsets, strict=True):
            record = item.record
            request = record.request
            verdict = allow.check(
                request.method, request.path, body_whole=not request.body_truncated
            )
            if verdict.reason is not None or verdict.path is None:
                reason = verdict.reason or "skipped_path"
                reasons[reason] = reasons.get(reason, 0) + 1
                continue
            if _untranslatable(record, arms or {}, allow):
                reasons["skipped_untranslatable"] = reasons.get("skipped_untranslatable", 0) + 1
                continue
            slices = ",".join(f"{k}={v}" for k, v in sorted(record.slices.items()))
            rows.append(DryRunRow(float(offset), record.trace_id, verdict.path, slices))
        first = self.items[0].record.request.headers if self.items else {}
        return DryRun(
            rows=rows,
            skipped=sum(reasons.values()),
            skipped_by_reason=reasons,
            arms=self.arms,
            duration_s=float(self.offsets[-1]) if len(self.offsets) else 0.0,
            headers_dropped=unsent_headers(first, pass_headers),
        )


def _untranslatable(
    record: TraceRecord, arms: Mapping[str, ArmConfig], routes: RouteAllowList
) -> bool:
    """Whether an arm's ``format`` cannot translate ``record`` (the replay then sends it to no
    arm: shadow.replay.scheduler.FanOut.admits)."""
    for config in arms.values():
        if config.format == "auto":
            continue
        try:
            build_request(record, config, secret=None, routes=routes)
        except RefusedRequest as refused:
            if refused.reason == "skipped_untranslatable":
                return True
    return False
