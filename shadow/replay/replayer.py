"""The replayer: fan captured requests out to the arms, open loop, at the scheduled times.

Each record is due at ``start + offset_i`` (offsets from :mod:`shadow.replay.pacing`:
recorded gaps / speed, or a synthetic arrival process). At its due time it goes to every arm at once
(``baseline``, ``candidate``, and ``baseline_repeat`` for the noise floor). A slow target never
delays later sends: each send is its own task. ``max_in_flight`` bounds concurrency; a send
that had to wait for a slot is late, and its lag (``sent_at`` − ``scheduled_at`` of each first
attempt, as stored) is recorded and counted, never hidden: latency counts from the due time.

The sends themselves, and the rails around them (breakers, the budget cap, retries, the path
allow-list), are the shared :class:`~shadow.replay.scheduler.FanOut`; the replayer decides
when each record is due. A graceful stop (:meth:`Replayer.request_stop`: stop scheduling, let
in-flight sends finish within the grace period) or an immediate one (:meth:`Replayer.force_stop`).
While it runs, the objects loaded before it (the records) are frozen out of the cycle
collector, young collections are rarer and the GIL changes hands every 0.5 ms
(:func:`_punctual`), so neither the collector nor a thread (the results writer's hand-over to
its process, :mod:`shadow.results.process`) makes sends late. Shortly before the first send,
each HTTP arm opens as many connections as the first 100 ms of the schedule will use (at most
16, :meth:`~shadow.replay.targets.HttpTarget.preconnect`), so the first sends do not each
open their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import sys
import time
from collections.abc import Iterator, Sequence

from shadow.replay.pacing import Pacer
from shadow.replay.scheduler import FanOut
from shadow.replay.sources import SourceItem
from shadow.replay.stats import ReplayStats

__all__ = ["Replayer"]

log = logging.getLogger("shadow.replay.replayer")

_INTERRUPTIBLE_S = 0.25
"""Waits longer than this also wake up on a stop request."""

_PRECONNECT_MAX = 16
"""At most this many connections per arm are opened before the first send."""

_PRECONNECT_WINDOW_S = 0.1
"""An arm opens one connection per record due in this first stretch of the schedule."""

_PRECONNECT_LEAD_S = 0.25
"""How long before the first send the connections are opened (well inside any server's
keep-alive), and the longest that may take; a start sooner than this leaves less."""

_GC_THRESHOLD_0 = 50_000
"""The youngest generation's collection threshold while a replay runs (Python's is 700)."""

_SWITCH_INTERVAL_S = 0.0005
"""How long another thread (the results writer) may hold the GIL while the loop waits for it,
while a replay runs (Python's default is 5 ms)."""


class Replayer:
    """Runs one replay (see the module docstring) through ``fanout``, which sends and records.

    Args:
        fanout: the run's sends and rails; its stats count ``items`` as the run's total.
        items: the records, in replay order, and ``offsets`` their due times (seconds after
            ``start``, a ``loop.time()`` value; by default 50 ms after the first sends'
            connections are open, at most 300 ms after :meth:`run` begins).
        done: ``(trace_id, arm)`` pairs already answered (a resumed run): not sent again.
    """

    def __init__(
        self,
        fanout: FanOut,
        *,
        items: Sequence[SourceItem],
        offsets: Sequence[float],
        done: set[tuple[str, str]] | None = None,
        start: float | None = None,
    ) -> None:
        if len(items) != len(offsets):
            raise ValueError("items and offsets differ in length")
        self.fanout = fanout
        self.run_id = fanout.run_id
        self.items = items
        self.offsets = [float(o) for o in offsets]  # plain floats: numpy scalars leak into rows
        self.done = done or set()
        self.start = start
        self.stats = fanout.stats
        self.stats.total = len(items)

    def request_stop(self) -> None:
        """Stop scheduling; sends already under way finish within the grace period."""
        self.fanout.request_stop()

    def force_stop(self) -> None:
        """Stop now: cancel every send under way (results so far are still written)."""
        self.fanout.force_stop()

    async def run(self) -> ReplayStats:
        """Schedule every record, wait for the sends, flush the results; returns the stats.

        An exception in a send is not swallowed: it stops the replay and is raised here.
        """
        with _punctual():
            return await self.fanout.run(self._schedule)

    async def _pacer(self) -> Pacer:
        """The run's pacer, with the first sends' connections opened before the first is due.

        Without an agreed start the connections are opened first (for up to
        ``_PRECONNECT_LEAD_S``) and the replay begins 50 ms later; with one (``--start-at``)
        they are opened ``_PRECONNECT_LEAD_S`` before the first send, in what time is left.
        """
        loop = asyncio.get_running_loop()
        if self.start is None:
            await self._preconnect(_PRECONNECT_LEAD_S)
            return Pacer(loop.time() + 0.05, precise=True)
        pacer = Pacer(self.start, precise=True)
        first = self.offsets[0] if self.offsets else 0.0
        await self._wait(pacer, first - _PRECONNECT_LEAD_S)
        budget = min(_PRECONNECT_LEAD_S, pacer.due(first) - loop.time() - 0.005)
        if budget > 0 and not self.fanout.stop_requested():
            await self._preconnect(budget)
        return pacer

    async def _preconnect(self, budget_s: float) -> None:
        """Have each arm open one connection per record due in the schedule's first 100 ms."""
        if not self.offsets:
            return
        first = self.offsets[0]
        early = itertools.takewhile(lambda o: o < first + _PRECONNECT_WINDOW_S, self.offsets)
        count = sum(1 for _ in itertools.islice(early, _PRECONNECT_MAX))
        targets = self.fanout.targets.values()
        openers = [o for t in targets if (o := getattr(t, "preconnect", None)) is not None]
        if not openers:
            return
        opened = await asyncio.gather(*(opener(count, budget_s) for opener in openers))
        log.debug("opened %s connection(s) per arm before the first send (asked %d)", opened, count)

    async def _schedule(self) -> None:
        pacer = await self._pacer()
        fanout = self.fanout
        arms = list(fanout.targets)
        for item, offset in zip(self.items, self.offsets, strict=True):
            if fanout.stop_requested():
                return
            record = item.record
            if not fanout.admits(record, item.position):
                continue
            pending = [arm for arm in arms if (record.trace_id, arm) not in self.done]
            if not pending:
                self.stats.skipped_done += 1
                continue
            await self._wait(pacer, offset)
            if fanout.stop_requested():
                return
            await fanout.acquire()
            # Lag on the high-resolution clock (uvloop's loop.time() has 1 ms resolution).
            due = pacer.perf_due(offset)
            lag_s = max(0.0, time.perf_counter() - due)
            scheduled_at = time.time() - lag_s
            await fanout.add_trace(record)
            await fanout.dispatch(item, pending, due=due, scheduled_at=scheduled_at)

    async def _wait(self, pacer: Pacer, offset: float) -> None:
        """Sleep until the due time; a long wait also wakes when a stop is requested."""
        remaining = pacer.due(offset) - asyncio.get_running_loop().time()
        if remaining < _INTERRUPTIBLE_S:  # the common case: no extra futures per record
            await pacer.wait_until(offset)
            return
        waiter = asyncio.ensure_future(pacer.wait_until(offset))
        stopper = asyncio.ensure_future(self.fanout.wait_stop())
        try:
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (waiter, stopper):
                if not fut.done():
                    fut.cancel()


@contextlib.contextmanager
def _punctual() -> Iterator[None]:
    """Keep the cycle collector's and the writer thread's pauses out of the schedule.

    The loaded records are moved out of the collector's sight (:func:`gc.freeze`) and young
    collections run less often: measured at 2,000 sends/s, full collections over the loaded
    records paused the loop for 35-65 ms (every send due then was late by as much). The GIL
    is handed over every 0.5 ms instead of 5 ms, so the results writer's thread (building a
    batch's rows) cannot keep the loop waiting for longer. All is undone when the replay ends.
    """
    gc.collect()
    gc.freeze()
    threshold = gc.get_threshold()
    gc.set_threshold(max(threshold[0], _GC_THRESHOLD_0), *threshold[1:])
    switch = sys.getswitchinterval()
    sys.setswitchinterval(min(switch, _SWITCH_INTERVAL_S))
    try:
        yield
    finally:
        sys.setswitchinterval(switch)
        gc.set_threshold(*threshold)
        gc.unfreeze()
