"""The live mirror: each record arriving on the topic goes to the candidate at once.

The baseline is what production already answered: the captured response becomes a result
row of arm ``production`` (its latency, status, usage and output as captured), and the
candidate's answer a row of arm ``candidate``, so the analyzer compares them the same way it
compares a replay's arms. Same rails as a replay (breaker, budget, path allow-list,
``max_in_flight``); offsets are committed only once the results are durable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from shadow.replay.pacing import Pacer
from shadow.replay.replayer import Replayer, ReplayStats
from shadow.replay.sources import SourceItem, TraceSource
from shadow.replay.targets import Attempt
from shadow.results.store import TraceRow
from shadow.wire.usage import output_text

__all__ = ["Mirror", "StatsCollector", "production_attempt"]


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


class Mirror(Replayer):
    """Runs until stopped, sending each new record to the candidate as it arrives."""

    def __init__(self, *, source: TraceSource, **kwargs: Any) -> None:
        # A mirror runs until stopped: keep a bounded window of lags and latencies.
        super().__init__(items=[], offsets=[], source=source, stats_window=100_000, **kwargs)

    async def _schedule(self, pacer: Pacer) -> None:
        assert self.source is not None
        iterator = aiter(self.source)
        stop = asyncio.ensure_future(self._stop.wait())
        index = 0
        try:
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
                await self._mirror_one(index, item)
                index += 1
        finally:
            stop.cancel()

    async def _mirror_one(self, index: int, item: SourceItem) -> None:
        record = item.record
        self.stats.total += 1
        if self.allowed and not record.request.path.startswith(self.allowed):
            self.stats.skipped_path += 1
            return
        arrived = time.time()
        await self.writer.add([], [TraceRow.from_record(record, run_id=self.run_id)])
        production = production_attempt(item)
        await self._write(item, "production", record.captured_at / 1e9, production, 0)
        await self._slots.acquire()
        due = time.perf_counter()
        self.stats.lags_ms.append(0.0)
        self.stats.scheduled += 1
        self._outstanding[index] = 1
        task = asyncio.create_task(self._fire(index, item, "candidate", due, arrived))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.stats.in_flight += 1


class StatsCollector(Collector):
    """Exposes a run's live figures to Prometheus (read at scrape time, no double counting)."""

    def __init__(self, stats: ReplayStats, prefix: str = "shadow_mirror") -> None:
        self.stats = stats
        self.prefix = prefix

    def collect(self) -> Iterator[Any]:
        p, s = self.prefix, self.stats
        yield _counter(f"{p}_records", "Records consumed.", [((), s.total)])
        yield _counter(f"{p}_skipped_path", "Records skipped by the path allow-list.",
                       [((), s.skipped_path)])  # fmt: skip
        yield _gauge(f"{p}_in_flight", "Sends under way.", [((), s.in_flight)])
        yield _counter(f"{p}_sent", "Sends per arm.", [((a,), x.sent) for a, x in s.arms.items()],
                       ["arm"])  # fmt: skip
        yield _counter(f"{p}_ok", "Successful responses per arm.",
                       [((a,), x.ok) for a, x in s.arms.items()], ["arm"])  # fmt: skip
        yield _counter(
            f"{p}_errors",
            "Errors per arm and class.",
            [((a, e), n) for a, x in s.arms.items() for e, n in x.errors.items()],
            ["arm", "error"],
        )
        yield _counter(f"{p}_cost_usd", "Priced cost per arm.",
                       [((a,), x.cost_usd) for a, x in s.arms.items()], ["arm"])  # fmt: skip
        for q in (50, 99):
            values = [
                ((a,), value)
                for a, x in s.arms.items()
                if (value := x.latency_percentile(q, last=5000)) is not None
            ]
            yield _gauge(f"{p}_latency_p{q}_ms", f"Latency p{q} over the last 5,000 sends.",
                         values, ["arm"])  # fmt: skip


def _counter(
    name: str,
    doc: str,
    samples: Iterable[tuple[tuple[str, ...], float]],
    labels: list[str] | None = None,
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels or [])
    for label_values, value in samples:
        family.add_metric(list(label_values), value)
    return family


def _gauge(
    name: str,
    doc: str,
    samples: Iterable[tuple[tuple[str, ...], float]],
    labels: list[str] | None = None,
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels or [])
    for label_values, value in samples:
        family.add_metric(list(label_values), value)
    return family


def metrics_registry(stats: ReplayStats) -> CollectorRegistry:
    """A registry exposing ``stats`` (serve it with prometheus_client.start_http_server)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(stats))
    return registry
