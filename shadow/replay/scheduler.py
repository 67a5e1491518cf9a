"""The fan-out: one record to each of its arms, every send its own task, under the run's rails.

Shared by the :class:`~shadow.replay.replayer.Replayer` (paced, from a loaded list) and the
:class:`~shadow.replay.mirror.Mirror` (live, from a topic): they decide *when* a record is due,
:class:`FanOut` does the rest. Per send: the arm's circuit breaker (skip and count while
open), the budget cap on the priced cost (stop the run once reached, or once it cannot be
enforced because a model has no price: :mod:`shadow.replay.budget`), retries (off by
default; every attempt is a row, with its cost), the validators (what makes a 2xx a success),
pricing, the result row and the running stats. Once every arm of a record has finished, the
record's source position becomes committable; positions are committed only after the results
that hold them are durable.

Every send task belongs to one :class:`asyncio.TaskGroup`: an exception in a send is never
dropped, it cancels the run and surfaces from :meth:`FanOut.run`.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence

from shadow.replay.breaker import CircuitBreaker
from shadow.replay.budget import NO_MODEL, unenforceable_reason
from shadow.replay.pricing import PricingTable
from shadow.replay.sources import SourceItem, TraceSource
from shadow.replay.stats import ReplayStats
from shadow.replay.targets import Attempt, Target, untranslatable
from shadow.replay.validators import Validators
from shadow.results.rows import ResultRow, TraceRow
from shadow.results.writer import AsyncResultsWriter
from shadow.trace.record import TraceRecord
from shadow.trace.source import Position
from shadow.wire.routes import RouteAllowList

__all__ = ["FanOut"]

log = logging.getLogger("shadow.replay.scheduler")

_RETRYABLE = frozenset({"timeout", "connect", "http_5xx"})
_COMMIT_EVERY_S = 5.0


class FanOut:
    """Sends records to arms as their schedulers dispatch them (see the module docstring).

    Args:
        run_id: the run the result rows belong to.
        targets: the arms that can be sent to, by name.
        breakers: a circuit breaker per arm name (arms without one are never skipped).
        routes: the route allow-list (:mod:`shadow.wire.routes`): a record it refuses is
            never sent, its reason counted and written as each arm's result row (None:
            every record goes on to the targets, which hold their own guard).
        max_in_flight: at most this many sends under way; :meth:`acquire` waits for a slot.
        max_cost_usd: stop the run once the priced cost of all attempts reaches this, or once
            an attempt is about to go to (``model_of``) or reports a model without a price.
        allow_unpriced: with ``max_cost_usd``, go on past unpriced models (the cap then
            covers priced attempts only; unpriced ones are counted in the stats).
        model_of: the model a record's request will ask an arm for (None: unknown), checked
            against the pricing before each send while a budget is set.
        retries: extra attempts after a timeout, connection error, 5xx or 429.
        source: where committable positions are committed (after the results are durable).
        grace_s: after a stop request, how long sends under way get to finish.
        on_result: called with every result row, after it is handed to the writer.
        stats_window: keep only this many of the newest lags and latencies per arm in
            :attr:`stats` (a long-running mirror); None keeps all.

    :attr:`stats` holds the run's running figures, updated as sends start and finish.
    """

    def __init__(
        self,
        *,
        run_id: str,
        targets: Mapping[str, Target],
        writer: AsyncResultsWriter,
        pricing: PricingTable,
        validators: Validators | None = None,
        breakers: Mapping[str, CircuitBreaker] | None = None,
        routes: RouteAllowList | None = None,
        max_in_flight: int = 10_000,
        max_cost_usd: float | None = None,
        allow_unpriced: bool = False,
        model_of: Callable[[TraceRecord, str], str | None] | None = None,
        retries: int = 0,
        source: TraceSource | None = None,
        grace_s: float = 30.0,
        on_result: Callable[[ResultRow], None] | None = None,
        stats_window: int | None = None,
    ) -> None:
        self.run_id = run_id
        self.stats = ReplayStats(run_id=run_id, total=0, window=stats_window)
        self.targets = targets
        self.writer = writer
        self.pricing = pricing
        self.validators = validators or Validators()
        self.breakers = dict(breakers or {})
        self.routes = routes
        self.max_cost_usd = max_cost_usd
        self.allow_unpriced = allow_unpriced
        self.model_of = model_of
        self.retries = retries
        self.source = source
        self.grace_s = grace_s
        self.on_result = on_result
        self._stop = asyncio.Event()
        self._group: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._keys = itertools.count()
        self._outstanding: dict[int, int] = {}
        self._completed: list[tuple[str, int, int]] = []

    # -- control ------------------------------------------------------------------------------

    def stop_requested(self) -> bool:
        """True once :meth:`request_stop` (or the budget) stopped the run."""
        return self._stop.is_set()

    async def wait_stop(self) -> None:
        """Return once a stop is requested."""
        await self._stop.wait()

    def request_stop(self) -> None:
        """Stop scheduling; sends already under way finish within the grace period."""
        self.stats.stopped_early = True
        self._stop.set()

    def force_stop(self) -> None:
        """Stop now: cancel every send under way (results so far are still written)."""
        self.request_stop()
        for task in list(self._tasks):
            task.cancel()

    # -- the run ------------------------------------------------------------------------------

    async def run(self, schedule: Callable[[], Awaitable[None]]) -> ReplayStats:
        """Run ``schedule`` (which dispatches records), wait for the sends, flush the results.

        Returns the stats. An exception in ``schedule`` or in any send cancels the others and
        is raised here (a lone exception as itself, several distinct ones as a group); the
        results written so far are flushed either way.
        """
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                committer = group.create_task(self._commit_periodically(), name="commit")
                try:
                    await schedule()
                    await self._drain()
                finally:
                    self._group = None
                    committer.cancel()
        except BaseExceptionGroup as group_error:
            _raise_unwrapped(group_error)
        finally:
            self.stats.ended = time.monotonic()
            await self._commit_durable()
        return self.stats

    async def _drain(self) -> None:
        """After a stop request, give the sends under way ``grace_s``, then cancel the rest."""
        if self._tasks and self._stop.is_set():
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.grace_s)
            for task in pending:
                task.cancel()

    # -- what a scheduler calls ---------------------------------------------------------------

    def admits(self, record: TraceRecord, position: Position | None = None) -> bool:
        """Whether the route allow-list lets ``record`` through.

        A refused record is counted by reason in :attr:`stats` and, while the run runs, gets
        its trace row and one result row per arm with the reason as its ``error`` (nothing
        sent), so the results and the analyzer count it too; then its source ``position``
        (when given) is finished, so it does not hold back the commits after it.
        """
        if self.routes is None:
            return True
        request = record.request
        verdict = self.routes.check(
            request.method, request.path, body_whole=not request.body_truncated
        )
        reason, detail = verdict.reason, None
        if reason is None:  # sent to every arm or to none: no arm gets a half-translation
            detail = next(
                filter(None, (untranslatable(t, record) for t in self.targets.values())), None
            )
            if detail is None:
                return True
            reason = "skipped_untranslatable"
        self.stats.count_skip(reason, detail)
        if self._group is not None:
            skip = self._write_skip(record, reason, position)
            self._group.create_task(skip, name="skip")
        return False

    async def _write_skip(
        self, record: TraceRecord, reason: str, position: Position | None
    ) -> None:
        await self.add_trace(record)
        item = SourceItem(record=record, position=position)
        for arm in self.targets:
            await self.write(item, arm, time.time(), Attempt(error=reason), 0)
        if position is not None:
            self._completed.append(position)

    async def acquire(self) -> None:
        """Take one send slot; waits while ``max_in_flight`` sends are under way."""
        await self._slots.acquire()

    async def add_trace(self, record: TraceRecord) -> None:
        """Hand the record's trace row to the writer (once per record, before its results)."""
        await self.writer.add([], [TraceRow.from_record(record, run_id=self.run_id)])

    async def dispatch(
        self,
        item: SourceItem,
        arms: Sequence[str],
        *,
        due: float,
        scheduled_at: float,
    ) -> None:
        """Start one send per arm; the caller holds one slot (:meth:`acquire`), the rest are
        taken here, one per further arm.

        Args:
            due: ``time.perf_counter()`` value the sends were due at (latency counts from it).
            scheduled_at: epoch seconds of the due time, as written in the result rows (each
                first attempt's schedule lag, ``sent_at`` − this, is counted in :meth:`write`).
        """
        group = self._group
        if group is None:
            raise RuntimeError("FanOut.dispatch() is only valid while FanOut.run() runs")
        self.stats.scheduled += 1
        key = next(self._keys)
        self._outstanding[key] = len(arms)
        for n, arm in enumerate(arms):
            if n:  # one slot per send; the caller took the first before measuring the lag
                await self._slots.acquire()
            task = group.create_task(self._send(item, arm, due, scheduled_at), name=f"send:{arm}")
            self._tasks.add(task)
            self.stats.in_flight += 1
            task.add_done_callback(functools.partial(self._finished, key, item, arm))

    async def write(
        self, item: SourceItem, arm: str, scheduled_at: float, attempt: Attempt, attempt_no: int
    ) -> bool:
        """Judge, price and count one attempt, and hand its result row to the writer.

        Returns whether the attempt is a success (2xx, parsed, every validator passes).
        """
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
                attempt.cache_write_tokens or 0,
            )
        stats = self.stats.arm(arm)
        if attempt.sent_at is not None and attempt_no == 0 and arm in self.targets:
            # The stored lag of a first attempt this run sent (not the mirror's production row).
            self.stats.count_lag(scheduled_at, attempt.sent_at)
        if attempt.sent_at is not None:
            stats.sent += 1
            stats.ok += ok
            if attempt.latency_ms is not None:
                stats.latencies_ms.append(attempt.latency_ms)
        if error is not None:
            stats.count_error(error)
        stats.cost_usd += cost or 0.0
        if cost is None and (attempt.prompt_tokens or attempt.completion_tokens):
            self._unpriced(arm, attempt.model or NO_MODEL)
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
            cache_write_tokens=attempt.cache_write_tokens,
            cost_usd=cost,
            output_text=attempt.output_text,
            chunk_offsets_ms=attempt.chunk_offsets_ms,
        )
        await self.writer.add([row])
        if self.on_result is not None:
            self.on_result(row)
        return ok

    # -- one send -----------------------------------------------------------------------------

    async def _send(self, item: SourceItem, arm: str, due: float, scheduled_at: float) -> None:
        target = self.targets[arm]
        breaker = self.breakers.get(arm)
        stats = self.stats.arm(arm)
        for attempt_no in range(self.retries + 1):
            if breaker is not None and not breaker.allow():
                stats.skipped += 1
                # A skipped retry is its own attempt: it must not overwrite the real first one.
                skip = Attempt(error="skipped_breaker")
                await self.write(item, arm, scheduled_at, skip, attempt_no)
                return
            if self._over_budget(item.record, arm):
                stats.skipped += 1
                skip = Attempt(error="skipped_budget")
                await self.write(item, arm, scheduled_at, skip, attempt_no)
                return
            attempt = await target.send(item.record, due=due)
            ok = await self.write(item, arm, scheduled_at, attempt, attempt_no)
            if attempt.error == "skipped_untranslatable":  # refused by the target: not sent
                self.stats.count_skip(attempt.error, attempt.error_detail)
                return
            if breaker is not None:
                breaker.record(ok)
            if ok or (attempt.error not in _RETRYABLE and attempt.status != 429):
                return
            due = time.perf_counter()  # a retry is due when the failed attempt ended

    # -- the budget ---------------------------------------------------------------------------

    def _over_budget(self, record: TraceRecord, arm: str) -> bool:
        """Whether the budget stops this send (spent, or unenforceable); stops the run if so."""
        if self.max_cost_usd is None:
            return False
        if self.model_of is not None and not self.allow_unpriced:
            model = self.model_of(record, arm)
            if model is not None and self.pricing.price(model) is None:
                self._cannot_enforce(model)
        if self.stats.budget_unenforceable is None and self.stats.cost_usd < self.max_cost_usd:
            return False
        if not self.stats.budget_exhausted:
            log.warning("budget of %.2f USD reached; stopping", self.max_cost_usd)
        self.stats.budget_exhausted = True
        self.request_stop()
        return True

    def _unpriced(self, arm: str, model: str) -> None:
        """Count an attempt whose tokens could not be priced; a budget cannot cover it."""
        self.stats.arm(arm).unpriced += 1
        seen = self.stats.unpriced_models
        if model not in seen:
            log.warning("model %r has no price: its attempts have no cost", model)
        seen[model] = seen.get(model, 0) + 1
        if self.max_cost_usd is not None and not self.allow_unpriced:
            self._cannot_enforce(model)

    def _cannot_enforce(self, model: str) -> None:
        """Stop the run: a budget that cannot see an attempt's cost is not a budget."""
        if self.stats.budget_unenforceable is None:
            self.stats.budget_unenforceable = unenforceable_reason(model)
            log.warning("%s; stopping", self.stats.budget_unenforceable)
        self.stats.budget_exhausted = True
        self.request_stop()

    def _finished(self, key: int, item: SourceItem, arm: str, task: asyncio.Task[None]) -> None:
        """Bookkeeping once a send ends, however it ends (even cancelled before it started)."""
        self._tasks.discard(task)
        self._slots.release()
        self.stats.in_flight -= 1
        if task.cancelled():
            self.stats.arm(arm).count_error("cancelled")
        left = self._outstanding.get(key, 1) - 1
        self._outstanding[key] = left
        if left == 0:
            del self._outstanding[key]
            if item.position is not None:
                self._completed.append(item.position)

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


def _raise_unwrapped(group: BaseExceptionGroup[BaseException]) -> None:
    """Raise the first error of a task group as itself (one line for the CLI).

    Sends that fail together (the same bug hit by two arms at once) would otherwise surface as
    a group whose contents depend on timing; the others are logged and noted on the first.
    """
    leaves: list[BaseException] = []
    pending: deque[BaseException] = deque([group])
    while pending:  # breadth first, so the first leaf is the group's first error
        error = pending.popleft()
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        elif not any(error is seen for seen in leaves):
            leaves.append(error)
    first = leaves[0]
    if len(leaves) > 1:
        log.error("%d sends failed: %s", len(leaves), "; ".join(map(repr, leaves)))
        first.add_note(f"{len(leaves) - 1} more send(s) failed at the same time (see the log)")
    raise first from first.__cause__  # keeps its own cause; the group adds nothing
