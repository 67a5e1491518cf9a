"""Trace sources: where the replayer and the live mirror read TraceRecords from.

:func:`open_source` turns a spec into a :class:`TraceSource`:

- ``traces.jsonl``: one JSON record per line (:class:`~shadow.trace.readers.JsonlSource`),
  decoded in a worker thread in batches of lines, so a 100 MB file never blocks the event loop.
- ``traces.parquet``: TraceRecord fields as nested columns (as :func:`write_parquet` writes them),
  or one ``record`` column of JSON text (:class:`~shadow.trace.readers.ParquetSource`).
- ``kafka://HOST:PORT[,HOST:PORT]/TOPIC``: an aiokafka consumer
  (:class:`~shadow.kafka.source.KafkaSource`; groups, commits and follow mode are described
  there and in docs/architecture.md, "Kafka"). A bounded read goes past the end offsets the
  broker reports until each partition is quiet, and :func:`read_summary` says per partition
  what it read (:mod:`shadow.kafka.reads`).

A record that fails validation goes to the dead-letter file with its reason and origin
(``file:line``, ``file:row`` for Parquet, ``topic/partition@offset``) and reading goes on.
``from_time_ns``/``to_time_ns`` keep ``from <= captured_at < to``; ``limit`` stops after that
many records. Every source does this through the same loop (:mod:`shadow.trace.decoding`).

The protocol itself (:class:`SourceItem`, :class:`TraceSource`) is defined in
:mod:`shadow.trace.source`, below both the file and the Kafka sources, and re-exported here
with the sources, :class:`OffsetTracker` and :func:`write_parquet`.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shadow.errors import UsageError
from shadow.kafka.address import KAFKA_FORM, KafkaAddress
from shadow.kafka.offsets import OffsetTracker
from shadow.kafka.source import KafkaSource
from shadow.trace.deadletter import DeadLetterFile
from shadow.trace.decoding import Window
from shadow.trace.parquet import write_parquet
from shadow.trace.readers import JsonlSource, ParquetSource
from shadow.trace.source import SourceItem, TraceSource

__all__ = [
    "JsonlSource",
    "KafkaSource",
    "OffsetTracker",
    "ParquetSource",
    "SourceItem",
    "TraceSource",
    "load_sorted",
    "open_source",
    "read_summary",
    "write_parquet",
]

_ACCEPTED = (
    "a .jsonl or .parquet trace file, or kafka://HOST:PORT[,HOST:PORT]/TOPIC "
    "(e.g. kafka://127.0.0.1:9092/shadow.traces)"
)


def open_source(
    spec: str,
    *,
    dead_letter: DeadLetterFile,
    group_id: str | None = None,
    from_time_ns: int | None = None,
    to_time_ns: int | None = None,
    follow: bool = False,
    limit: int | None = None,
    consumer_options: Mapping[str, Any] | None = None,
) -> TraceSource:
    """Open the source that ``spec`` names (see the module docstring for the forms).

    Nothing is read or connected until the source is iterated.

    Args:
        group_id: Kafka only: join this consumer group and commit through ``commit()``.
        follow: Kafka only: keep reading new records instead of stopping at the end.
        consumer_options: Kafka only: extra ``AIOKafkaConsumer`` keyword arguments
            (security settings, session timeouts).

    Raises:
        UsageError: the spec is none of the accepted forms, the file does not exist, or an
            option is out of range.
    """
    window = Window(from_time_ns, to_time_ns, limit)
    if KafkaAddress.is_address(spec):
        try:
            address = KafkaAddress.parse(spec)
        except UsageError:
            raise UsageError(f"cannot read traces from {spec!r}; expected {KAFKA_FORM}") from None
        return KafkaSource(
            address,
            dead_letter=dead_letter,
            group_id=group_id,
            from_time_ns=from_time_ns,
            to_time_ns=to_time_ns,
            follow=follow,
            limit=limit,
            consumer_options=consumer_options,
        )
    suffix = Path(spec).suffix.lower()
    if suffix not in (".jsonl", ".parquet"):
        raise UsageError(f"cannot read traces from {spec!r}; expected {_ACCEPTED}")
    path = Path(spec)
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise UsageError(f"trace file {path} {what}; check the path")
    if suffix == ".jsonl":
        return JsonlSource(path, dead_letter=dead_letter, window=window)
    return ParquetSource(path, dead_letter=dead_letter, window=window)


def read_summary(source: TraceSource) -> dict[str, object]:
    """``{"reads": ...}``: what a bounded Kafka read read per partition; ``{}`` otherwise."""
    if isinstance(source, KafkaSource) and not source.follow:
        return {"reads": source.report.as_dict()}
    return {}


async def load_sorted(source: TraceSource, *, limit: int | None = None) -> list[SourceItem]:
    """Read a bounded source to its end and return its items sorted by captured_at.

    Kafka keeps order only within a partition, and pacing needs the recorded order across all of
    them, so the replayer reads its whole share first. The trade-off is memory: every record,
    bodies included, is held at once (a few times its JSON size as Python objects), so a large
    topic wants a time window (``from_time_ns``/``to_time_ns``), or its partitions split across
    replayers in a group. With ``limit`` only the ``limit`` earliest records are kept (memory
    bounded by ``limit``), although the whole source is still read. Ties keep source order.
    Never call this on a ``follow`` source: it does not end.
    """
    if limit is not None and limit < 1:
        raise UsageError(f"limit is {limit}; it must be >= 1 (or not given, for no limit)")
    if limit is None:
        items = [item async for item in source]
        items.sort(key=lambda item: item.record.captured_at)  # stable: ties keep source order
        return items
    # A max-heap of the `limit` earliest (captured_at, sequence) seen so far.
    heap: list[tuple[int, int, SourceItem]] = []
    seq = 0
    async for item in source:
        entry = (-item.record.captured_at, -seq, item)
        seq += 1
        if len(heap) < limit:
            heapq.heappush(heap, entry)
        elif entry > heap[0]:
            heapq.heapreplace(heap, entry)
    heap.sort(reverse=True)
    return [item for _, _, item in heap]
