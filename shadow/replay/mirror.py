"""The live mirror: each record arriving on the topic goes to the candidate at once.

The baseline is what production already answered: the captured response becomes a result
row of arm ``production`` (its latency, status, usage and output as captured), and the
candidate's answer a row of arm ``candidate``, so the analyzer compares them the same way it
compares a replay's arms. Same rails as a replay, from the same
:class:`~shadow.replay.scheduler.FanOut` (breaker, budget, path allow-list, ``max_in_flight``);
offsets are committed only once the results are durable.

At start the mirror waits for its source to be reachable (``ready``: for Kafka,
:func:`shadow.kafka.retry.wait_for_kafka` retries with backoff as the capture sidecar does),
so a mirror started before its broker comes up keeps trying instead of failing; a stop
request ends the wait. Records that fail validation go to the run's dead-letter file
(``dead_letter``), counted in the summary and the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from shadow.replay.scheduler import FanOut
from shadow.replay.sources import SourceItem, TraceSource
from shadow.replay.stats import ReplayStats
from shadow.replay.targets import Attempt
from shadow.trace.deadletter import DeadLetterFile
from shadow.wire.usage import output_text

__all__ = ["MIRROR_STATS_WINDOW", "Mirror", "production_attempt"]

MIRROR_STATS_WINDOW = 100_000
"""A mirror runs until stopped: it keeps this many of the newest lags and latencies per arm."""


def production_attempt(item: SourceItem) -> Attempt:
    """The captured production exchange, measured like a replayed one."""
    record = item.record
    response = record.response
    usage = record.usage
    attempt = Attempt(
        sent_at=record.captured_at / 1e9,
        latency_ms=record.timing.latency_ms,
        service_ms=record.timing.latency_ms,
        ttft_ms=record.timing.ttft_ms,
        error=record.error,
    )
    if usage is not None:
        attempt.model = usage.model
        attempt.prompt_tokens = usage.prompt_tokens
        attempt.completion_tokens = usage.completion_tokens
        attempt.cached_tokens = usage.cached_tokens
        attempt.cache_write_tokens = usage.cache_write_tokens
    if response is not None:
        attempt.status = response.status
        attempt.chunk_offsets_ms = response.chunk_offsets_ms
        if response.stream:
            attempt.output_text = response.body
        else:
            attempt.output_text = output_text(response.body_bytes(), None)
        if attempt.error is None and response.status >= 400:
            attempt.error = "http_4xx" if response.status < 500 else "http_5xx"
    return attempt


class Mirror:
    """Runs until stopped, sending each new record to the candidate as it arrives.

    ``fanout`` holds the ``candidate`` arm and the source the mirror follows (its positions
    are committed once durable); give it ``stats_window=MIRROR_STATS_WINDOW`` so a mirror that
    runs for days keeps bounded figures. ``ready`` (optional) is awaited before the first
    read and may wait as long as it must (until Kafka answers); ``dead_letter`` is where the
    source puts records that fail validation (reported, not written, by the mirror).
    """

    def __init__(
        self,
        fanout: FanOut,
        *,
        ready: Callable[[], Awaitable[Any]] | None = None,
        dead_letter: DeadLetterFile | None = None,
    ) -> None:
        if fanout.source is None:
            raise ValueError("a mirror follows its fan-out's source; give the FanOut one")
        if "candidate" not in fanout.targets:
            raise ValueError("a mirror sends to the candidate arm; give the FanOut one")
        self.fanout = fanout
        self.run_id = fanout.run_id
        self.source: TraceSource = fanout.source
        self.stats = fanout.stats
        self.ready = ready
        self.dead_letter = dead_letter

    def request_stop(self) -> None:
        """Stop taking new records; sends under way finish within the grace period."""
        self.fanout.request_stop()

    def force_stop(self) -> None:
        """Stop now: cancel every send under way (results so far are still written)."""
        self.fanout.force_stop()

    async def run(self) -> ReplayStats:
        """Mirror until stopped (or the source ends), then flush; returns the stats.

        An exception in a send is not swallowed: it stops the mirror and is raised here.
        """
        return await self.fanout.run(self._follow)

    async def _follow(self) -> None:
        stop = asyncio.ensure_future(self.fanout.wait_stop())
        try:
            if self.ready is not None and not await _unless_stopped(self.ready(), stop):
                return
            iterator = aiter(self.source)
            while True:
                nxt = asyncio.ensure_future(anext(iterator))
                done, _ = await asyncio.wait({nxt, stop}, return_when=asyncio.FIRST_COMPLETED)
                if nxt not in done:
                    nxt.cancel()
                    return
                try:
                    item = nxt.result()
                except StopAsyncIteration:
                    return
                await self._mirror_one(item)
        finally:
            stop.cancel()

    async def _mirror_one(self, item: SourceItem) -> None:
        fanout = self.fanout
        record = item.record
        self.stats.total += 1
        if not fanout.admits(record, item.position):  # finished: it never holds commits
            return
        arrived = time.time()
        await fanout.add_trace(record)
        production = production_attempt(item)
        await fanout.write(item, "production", record.captured_at / 1e9, production, 0)
        await fanout.acquire()
        await fanout.dispatch(item, ["candidate"], due=time.perf_counter(), scheduled_at=arrived)


async def _unless_stopped(work: Awaitable[Any], stop: asyncio.Future[Any]) -> bool:
    """Await ``work`` unless ``stop`` completes first (then cancel it); whether it finished."""
    task = asyncio.ensure_future(work)
    await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raises what the work raised
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return False
