"""A run's live figures as Prometheus metrics (``shadow mirror`` serves them on ``/metrics``).

The collector reads :class:`~shadow.replay.stats.ReplayStats` at scrape time, so nothing is
counted twice and the hot path does no metric bookkeeping of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from shadow.replay.stats import ReplayStats
from shadow.trace.deadletter import DeadLetterFile

__all__ = ["StatsCollector", "metrics_registry"]

_Samples = Iterable[tuple[tuple[str, ...], float]]


class StatsCollector(Collector):
    """Exposes a run's live figures to Prometheus (read at scrape time, no double counting).

    With ``dead_letter``, also how many records went to that dead-letter file.
    """

    def __init__(
        self,
        stats: ReplayStats,
        prefix: str = "shadow_mirror",
        *,
        dead_letter: DeadLetterFile | None = None,
    ) -> None:
        self.stats = stats
        self.prefix = prefix
        self.dead_letter = dead_letter

    def collect(self) -> Iterator[Any]:
        p, s = self.prefix, self.stats
        yield _counter(f"{p}_records", "Records consumed.", [((), s.total)])
        yield _counter(f"{p}_skipped_path", "Records skipped by the path allow-list.",
                       [((), s.skipped_path)])  # fmt: skip
        yield _counter(f"{p}_skipped_method", "Records whose method no route of the path allows.",
                       [((), s.skipped_method)])  # fmt: skip
        yield _counter(f"{p}_skipped_path_escape", "Records whose path climbs out with '..'.",
                       [((), s.skipped_path_escape)])  # fmt: skip
        yield _counter(f"{p}_skipped_body", "Records whose request body was not captured whole.",
                       [((), s.skipped_body)])  # fmt: skip
        yield _counter(f"{p}_skipped_untranslatable", "Records an arm's format cannot express.",
                       [((), s.skipped_untranslatable)])  # fmt: skip
        if self.dead_letter is not None:
            yield _counter(f"{p}_dead_letter_records",
                           f"Records that failed validation, written to {self.dead_letter.path}.",
                           [((), self.dead_letter.count)])  # fmt: skip
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


_F = TypeVar("_F", CounterMetricFamily, GaugeMetricFamily)


def _family(kind: type[_F], name: str, doc: str, samples: _Samples, labels: list[str] | None) -> _F:
    family = kind(name, doc, labels=labels or [])
    for label_values, value in samples:
        family.add_metric(list(label_values), value)
    return family


def _counter(
    name: str, doc: str, samples: _Samples, labels: list[str] | None = None
) -> CounterMetricFamily:
    return _family(CounterMetricFamily, name, doc, samples, labels)


def _gauge(
    name: str, doc: str, samples: _Samples, labels: list[str] | None = None
) -> GaugeMetricFamily:
    return _family(GaugeMetricFamily, name, doc, samples, labels)


def metrics_registry(
    stats: ReplayStats, *, dead_letter: DeadLetterFile | None = None
) -> CollectorRegistry:
    """A registry exposing ``stats`` (serve it with prometheus_client.start_http_server)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(stats, dead_letter=dead_letter))
    return registry
