"""The replayer: fan captured requests out to the arms, open loop, at the scheduled times.

Each record is due at ``start + offset_i`` (offsets from :mod:`shadow.replay.pacing`:
recorded gaps / speed, or a synthetic arrival process). At its due time it goes to every arm at once
(``baseline``, ``candidate``, and ``baseline_repeat`` for the noise floor). A slow target never
delays later sends: each send is its own task. ``max_in_flight`` bounds concurrency; a send
that had to wait for a slot is late, and its lag (sent − due) is recorded and counted, never
hidden: latency counts from the due time.

Rails: per-arm circuit breakers (skip and count while open), a budget cap on the priced cost,
retries off by default (every attempt is a row, with its cost), a path allow-list, and a
graceful stop (:meth:`Replayer.request_stop`: stop scheduling, let in-flight sends finish within
the grace period) or an immediate one (:meth:`Replayer.force_stop`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from shadow.replay.breaker import CircuitBreaker
from shadow.replay.pacing import Pacer
from shadow.replay.pricing import PricingTable
from shadow.replay.sources import SourceItem, TraceSource
from shadow.replay.targets import Attempt, Target
from shadow.replay.validators import Validators
from shadow.results.store import ResultRow, TraceRow
from shadow.results.writer import AsyncResultsWriter

__all__ = ["ArmStats", "ReplayStats", "Replayer"]

log = logging.getLogger("shadow.replay.replayer")

_LATE_MS = 5.0
"""A send whose lag exceeds this is counted as late."""
_RETRYABLE = frozenset({"timeout", "connect", "http_5xx"})
_COMMIT_EVERY_S = 5.0
_INTERRUPTIBLE_S = 0.25
"""Waits longer than this also wake up on a stop request."""


@dataclass
class ArmStats:
    """Running figures for one arm."""

    sent: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    cost_usd: float = 0.0
    window: int | None = None
    """Keep only the last ``window`` latencies (a live mirror runs for days); None keeps all."""
    latencies_ms: deque[float] = field(init=False)

    def __post_init__(self) -> None:
        self.latencies_ms = deque(maxlen=self.window)

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
    skipped_done: int = 0
    stopped_early: bool = False
    budget_exhausted: bool = False
    window: int | None = None
    """Keep only the last ``window`` lags and latencies per arm; None keeps all (a replay)."""
    lags_ms: deque[float] = field(init=False)
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
            "skipped_done": self.skipped_done,
            "stopped_early": self.stopped_early,
            "budget_exhausted": self.budget_exhausted,
            "cost_usd": round(self.cost_usd, 6),
            "arms": {name: stats.as_dict() for name, stats in sorted(self.arms.items())},
        }


def _percentile(values: deque[float], q: float, last: int | None) -> float | None:
    """Percentile of the newest ``last`` values (all when None); None when there are none."""
    if not values:
        return None
    recent = list(itertools.islice(reversed(values), last)) if last else values
    return float(np.percentile(np.asarray(recent), q))


class Replayer:
    """Runs one replay (see the module docstring)."""

    def __init__(
        self,
        *,
        run_id: str,
        items: Sequence[SourceItem],
        offsets: Sequence[float],
        targets: Mapping[str, Target],
        writer: AsyncResultsWriter,
        pricing: PricingTable,
        validators: Validators | None = None,
        breakers: Mapping[str, CircuitBreaker] | None = None,
        allowed_paths: Sequence[str] = (),
        max_in_flight: int = 10_000,
        max_cost_usd: float | None = None,
        retries: int = 0,
        done: set[tuple[str, str]] | None = None,
        source: TraceSource | None = None,
        start: float | None = None,
        grace_s: float = 30.0,
        on_result: Callable[[ResultRow], None] | None = None,
        stats_window: int | None = None,
    ) -> None:
        if len(items) != len(offsets):
            raise ValueError("items and offsets differ in length")
        self.run_id = run_id
        self.items = items
        self.offsets = [float(o) for o in offsets]  # plain floats: numpy scalars leak into rows
        self.targets = targets
        self.writer = writer
        self.pricing = pricing
        self.validators = validators or Validators()
        self.breakers = dict(breakers or {})
        self.allowed = tuple(allowed_paths)
        self.max_in_flight = max_in_flight
        self.max_cost_usd = max_cost_usd
        self.retries = retries
        self.done = done or set()
        self.source = source
        self.start = start
        self.grace_s = grace_s
        self.on_result = on_result
        self.stats = ReplayStats(run_id=run_id, total=len(items), window=stats_window)
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._outstanding: dict[int, int] = {}
        self._completed: list[tuple[str, int, int]] = []

    # -- control ------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop scheduling; sends already under way finish within the grace period."""
        self.stats.stopped_early = True
        self._stop.set()

    def force_stop(self) -> None:
        """Stop now: cancel every send under way (results so far are still written)."""
        self.request_stop()
        for task in list(self._tasks):
            task.cancel()

    # -- main loop ----------------------------------------------------------------------------

    async def run(self) -> ReplayStats:
        """Schedule every record, wait for the sends, flush the results; returns the stats."""
        loop = asyncio.get_running_loop()
        start = self.start if self.start is not None else loop.time() + 0.05
        pacer = Pacer(start, precise=True)
        committer = asyncio.create_task(self._commit_periodically())
        try:
            await self._schedule(pacer)
            await self._drain()
        finally:
            committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await committer
            self.stats.ended = time.monotonic()
            await self._commit_durable()
        return self.stats

    async def _schedule(self, pacer: Pacer) -> None:
        arms = list(self.targets)
        for index, (item, offset) in enumerate(zip(self.items, self.offsets, strict=True)):
            if self._stop.is_set():
                return
            record = item.record
            if self.allowed and not record.request.path.startswith(self.allowed):
                self.stats.skipped_path += 1
                continue
            pending = [arm for arm in arms if (record.trace_id, arm) not in self.done]
            if not pending:
                self.stats.skipped_done += 1
                continue
            await self._wait(pacer, offset)
            if self._stop.is_set():
                return
            await self._slots.acquire()
            # Lag on the high-resolution clock (uvloop's loop.time() has 1 ms resolution).
            due = pacer.perf_due(offset)
            lag_s = max(0.0, time.perf_counter() - due)
            scheduled_at = time.time() - lag_s
            lag_ms = lag_s * 1000.0
            self.stats.lags_ms.append(lag_ms)
            if lag_ms > _LATE_MS:
                self.stats.late += 1
            self.stats.scheduled += 1
            self._outstanding[index] = len(pending)
            await self.writer.add([], [TraceRow.from_record(record, run_id=self.run_id)])
            for n, arm in enumerate(pending):
                if n:  # one slot per send; the first was taken before measuring the lag
                    await self._slots.acquire()
                task = asyncio.create_task(
                    self._fire(index, item, arm, due, scheduled_at), name=f"send:{arm}"
                )
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                self.stats.in_flight += 1

    async def _wait(self, pacer: Pacer, offset: float) -> None:
        """Sleep until the due time; a long wait also wakes when a stop is requested."""
        remaining = pacer.due(offset) - asyncio.get_running_loop().time()
        if remaining < _INTERRUPTIBLE_S:  # the common case: no extra futures per record
            await pacer.wait_until(offset)
            return
        waiter = asyncio.ensure_future(pacer.wait_until(offset))
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (waiter, stopper):
                if not fut.done():
                    fut.cancel()

    async def _drain(self) -> None:
        if not self._tasks:
            return
        if self._stop.is_set():
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.grace_s)
            for task in pending:
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- one send -----------------------------------------------------------------------------

    async def _fire(
        self, index: int, item: SourceItem, arm: str, due: float, scheduled_at: float
    ) -> None:
        target = self.targets[arm]
        breaker = self.breakers.get(arm)
        stats = self.stats.arm(arm)
        try:
            for attempt_no in range(self.retries + 1):
                if breaker is not None and not breaker.allow():
                    stats.skipped += 1
                    await self._write(item, arm, scheduled_at, Attempt(error="skipped_breaker"), 0)
                    return
                if self.max_cost_usd is not None and self.stats.cost_usd >= self.max_cost_usd:
                    if not self.stats.budget_exhausted:
                        log.warning("budget of %.2f USD reached; stopping", self.max_cost_usd)
                    self.stats.budget_exhausted = True
                    self.request_stop()
                    stats.skipped += 1
                    await self._write(item, arm, scheduled_at, Attempt(error="skipped_budget"), 0)
                    return
                attempt = await target.send(item.record, due=due)
                ok = await self._write(item, arm, scheduled_at, attempt, attempt_no)
                if breaker is not None:
                    breaker.record(ok)
                if ok or (attempt.error not in _RETRYABLE and attempt.status != 429):
                    return
                due = time.perf_counter()  # a retry is due when the failed attempt ended
        except asyncio.CancelledError:
            stats.errors["cancelled"] = stats.errors.get("cancelled", 0) + 1
            raise
        finally:
            self._slots.release()
            self.stats.in_flight -= 1
            left = self._outstanding.get(index, 1) - 1
            self._outstanding[index] = left
            if left == 0:
                del self._outstanding[index]
                if item.position is not None:
                    self._completed.append(item.position)

    async def _write(
        self, item: SourceItem, arm: str, scheduled_at: float, attempt: Attempt, attempt_no: int
    ) -> bool:
        reason = None
        if attempt.http_ok:
            reason = self.validators.check(attempt.output_text)
        ok = attempt.http_ok and reason is None
        error = attempt.error or reason
        cost = None
        if attempt.prompt_tokens is not None or attempt.completion_tokens is not None:
            cost = self.pricing.cost(
                attempt.model,
                attempt.prompt_tokens or 0,
                attempt.completion_tokens or 0,
                attempt.cached_tokens or 0,
            )
        stats = self.stats.arm(arm)
        if attempt.sent_at is not None:
            stats.sent += 1
            stats.ok += ok
            if attempt.latency_ms is not None:
                stats.latencies_ms.append(attempt.latency_ms)
        if error is not None:
            stats.errors[error] = stats.errors.get(error, 0) + 1
        stats.cost_usd += cost or 0.0
        record = item.record
        row = ResultRow(
            run_id=self.run_id,
            trace_id=record.trace_id,
            arm=arm,
            attempt=attempt_no,
            slices=dict(record.slices),
            scheduled_at=scheduled_at,
            sent_at=attempt.sent_at,
            ttft_ms=attempt.ttft_ms,
            latency_ms=attempt.latency_ms,
            service_ms=attempt.service_ms,
            status=attempt.status,
            ok=ok,
            error=error,
            model=attempt.model,
            prompt_tokens=attempt.prompt_tokens,
            completion_tokens=attempt.completion_tokens,
            cached_tokens=attempt.cached_tokens,
            cost_usd=cost,
            output_text=attempt.output_text,
            chunk_offsets_ms=attempt.chunk_offsets_ms,
        )
        await self.writer.add([row])
        if self.on_result is not None:
            self.on_result(row)
        return ok

    # -- offsets ------------------------------------------------------------------------------

    async def _commit_periodically(self) -> None:
        while True:
            await asyncio.sleep(_COMMIT_EVERY_S)
            await self._commit_durable()

    async def _commit_durable(self) -> None:
        """Flush the results, then commit the source positions whose results were in it."""
        positions, self._completed = self._completed, []
        await self.writer.flush()
        if self.source is not None and positions:
            await self.source.commit(positions)
