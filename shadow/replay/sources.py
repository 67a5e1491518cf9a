"""Trace sources: where the replayer and the live mirror read TraceRecords from.

:func:`open_source` turns a spec into a :class:`TraceSource`:

- ``traces.jsonl``: one JSON record per line, decoded in a worker thread in batches of lines, so
  a 100 MB file never blocks the event loop.
- ``traces.parquet``: TraceRecord fields as nested columns (as :func:`write_parquet` writes them;
  maps are lists of ``{key, value}`` structs, the Parquet map layout), or one ``record`` column
  of JSON text.
- ``kafka://HOST:PORT[,HOST:PORT]/TOPIC``: an aiokafka consumer (:class:`KafkaSource`).

A record that fails validation goes to the dead-letter file with its reason and origin
(``file:line``, ``file:row`` for Parquet, ``topic/partition@offset``) and reading goes on.
``from_time_ns``/``to_time_ns`` keep ``from <= captured_at < to``; ``limit`` stops after that
many records.

Kafka with ``follow=False`` (``shadow replay``) snapshots the end offsets when it starts and stops
once every partition it is assigned has been read up to them; ``follow=True`` (``shadow mirror``)
never stops by itself. Without ``group_id`` every partition is assigned to this consumer, each
run starts at the beginning (or ``from_time_ns``) and ``commit()`` does nothing. With
``group_id`` the consumer joins that group and Kafka splits the partitions across its members,
so replayer processes started with the same group (and the same ``--start-at``, DESIGN.md
"Pacing") each replay a share. Nothing is committed automatically: the caller commits positions
once their results are durable, and :class:`OffsetTracker` advances a partition only through a
prefix of finished records. A restart or rebalance re-reads what was not committed
(at-least-once; results are idempotent on ``(run_id, trace_id, arm)``), and a committed offset
takes precedence over ``from_time_ns``. Members should join together: one that joins after
another has read (but not committed) a partition reads it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import logging
import os
import re
import secrets
from collections.abc import AsyncIterator, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import msgspec
import msgspec.inspect as mi

from shadow.errors import ReplayError, TraceError, UsageError
from shadow.trace.deadletter import DeadLetterFile
from shadow.trace.record import TraceRecord, decode

__all__ = [
    "JsonlSource",
    "KafkaSource",
    "OffsetTracker",
    "ParquetSource",
    "SourceItem",
    "TraceSource",
    "load_sorted",
    "open_source",
    "write_parquet",
]

log = logging.getLogger("shadow.replay.replayer")

Position = tuple[str, int, int]
"""Where a Kafka record came from: ``(topic, partition, offset)``."""

_ACCEPTED = (
    "a .jsonl or .parquet trace file, or kafka://HOST:PORT[,HOST:PORT]/TOPIC "
    "(e.g. kafka://127.0.0.1:9092/shadow.traces)"
)
_KAFKA_SPEC = re.compile(r"kafka://(?P<bootstrap>[^/]+)/(?P<topic>[A-Za-z0-9._-]{1,249})")
_HOST_PORT = re.compile(r"(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})")

_FILE_BATCH_ROWS = 4096  # rows decoded per worker-thread hop: large enough to amortise the hop
_CONNECT_TIMEOUT_S = 10.0
_POLL_MS = 200
_TOPIC_POLL_S = 1.0
_REPLAY_IDLE_MS = 24 * 3600 * 1000
# Kafka timestamps are the producer's send time (or the broker's append time), a little after
# captured_at; seeking this far before from_time_ns tolerates clock skew between sidecar and broker.
_SEEK_SLACK_MS = 60_000


@dataclass(frozen=True, slots=True)
class SourceItem:
    """One record and where it came from."""

    record: TraceRecord
    position: Position | None
    """``(topic, partition, offset)`` for Kafka; None for files."""


class TraceSource(Protocol):
    """Where TraceRecords come from; the swap point between files, Kafka and test fakes."""

    name: str

    def __aiter__(self) -> AsyncIterator[SourceItem]:
        """Yield the valid records; invalid ones go to the dead-letter file."""
        ...

    async def commit(self, positions: Sequence[Position]) -> None:
        """Mark these items finished; call only once their results are durable (files: no-op)."""
        ...

    async def aclose(self) -> None:
        """Release the file or consumer and end a running iteration; safe to call twice."""
        ...


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
    if limit is not None and limit < 1:
        raise UsageError(f"limit is {limit}; it must be >= 1 (or not given, for no limit)")
    if from_time_ns is not None and to_time_ns is not None and from_time_ns >= to_time_ns:
        raise UsageError(
            f"the time range [{from_time_ns}, {to_time_ns}) is empty; from must be before to"
        )
    window = _Window(from_time_ns, to_time_ns, limit)
    if spec.startswith("kafka://"):
        bootstrap, topic = _parse_kafka(spec)
        return KafkaSource(
            bootstrap,
            topic,
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


def _parse_kafka(spec: str) -> tuple[str, str]:
    match = _KAFKA_SPEC.fullmatch(spec)
    hosts = match["bootstrap"].split(",") if match else []
    if not match or not all(_valid_host_port(host) for host in hosts):
        raise UsageError(
            f"cannot read traces from {spec!r}; expected kafka://HOST:PORT[,HOST:PORT]/TOPIC "
            "(topic names use letters, digits, '.', '_' and '-')"
        )
    return match["bootstrap"], match["topic"]


def _valid_host_port(text: str) -> bool:
    match = _HOST_PORT.fullmatch(text)
    return match is not None and 0 < int(match["port"]) < 65536


@dataclass(frozen=True, slots=True)
class _Window:
    """The time range and count limit every source applies in the same way."""

    from_time_ns: int | None = None
    to_time_ns: int | None = None
    limit: int | None = None

    def holds(self, record: TraceRecord) -> bool:
        at = record.captured_at
        if self.from_time_ns is not None and at < self.from_time_ns:
            return False
        return self.to_time_ns is None or at < self.to_time_ns


def _invalid(exc: msgspec.ValidationError) -> str:
    message = str(exc)
    where = "" if " - at `$" in message else " - at `$`"
    return f"invalid TraceRecord: {message}{where}"


# Files -----------------------------------------------------------------------------------------

_Decoded = tuple[str, bytes, TraceRecord | str]
"""One row from a worker thread: (source for the dead-letter file, raw bytes, record or why not)."""


class _Closing:
    """``async with source:`` closes it."""

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class _FileSource(_Closing):
    """Shared iteration of the file sources: batches come from a worker thread."""

    def __init__(self, path: Path, *, dead_letter: DeadLetterFile, window: _Window) -> None:
        self.path = path
        self.name = str(path)
        self.dead_letter = dead_letter
        self.window = window
        self._open: list[Generator[list[_Decoded]]] = []

    def _batches(self) -> Generator[list[_Decoded]]:
        raise NotImplementedError

    async def __aiter__(self) -> AsyncIterator[SourceItem]:
        batches = self._batches()
        self._open.append(batches)
        window, count = self.window, 0
        try:
            no_more: list[_Decoded] = []
            while batch := await asyncio.to_thread(next, batches, no_more):
                for source, raw, result in batch:
                    if isinstance(result, str):
                        self.dead_letter.write(raw, reason=result, source=source)
                    elif window.holds(result):
                        yield SourceItem(result, None)
                        count += 1
                        if window.limit is not None and count >= window.limit:
                            return
        finally:
            if batches in self._open:
                self._open.remove(batches)
            await asyncio.to_thread(batches.close)  # closing a closed generator is a no-op

    async def commit(self, positions: Sequence[Position]) -> None:
        """Nothing to commit for a file."""

    async def aclose(self) -> None:
        """Close files an unfinished iteration left open; safe to call twice."""
        while self._open:
            batches = self._open.pop()
            # A batch being read in a worker thread cannot be closed from here; the iteration
            # closes its file when that batch returns.
            with contextlib.suppress(ValueError):
                await asyncio.to_thread(batches.close)


class JsonlSource(_FileSource):
    """Records from a JSONL file, in file order; blank lines are skipped."""

    def _batches(self) -> Generator[list[_Decoded]]:
        try:
            fh = self.path.open("rb")
        except OSError as exc:
            raise UsageError(f"cannot read trace file {self.path}: {exc.strerror}") from None
        with fh:
            batch: list[_Decoded] = []
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                result: TraceRecord | str
                try:
                    result = decode(line)
                except TraceError as exc:
                    result = str(exc)
                batch.append((f"{self.path}:{lineno}", line.rstrip(b"\r\n"), result))
                if len(batch) >= _FILE_BATCH_ROWS:
                    yield batch
                    batch = []
            if batch:
                yield batch


class ParquetSource(_FileSource):
    """Records from a Parquet file, in row order; dead letters name the 1-based row.

    The file is loaded into memory (columnar, about its uncompressed size) by a worker thread;
    rows are converted to records batch by batch.
    """

    def _batches(self) -> Generator[list[_Decoded]]:
        import polars as pl

        try:
            frame = pl.read_parquet(self.path)
        except (OSError, pl.exceptions.PolarsError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise UsageError(f"cannot read Parquet file {self.path}: {reason}") from None
        json_form = "record" in frame.columns and "trace_id" not in frame.columns
        row = 0
        for chunk in frame.iter_slices(_FILE_BATCH_ROWS):
            batch: list[_Decoded] = []
            if json_form:
                for value in chunk.get_column("record").to_list():
                    row += 1
                    batch.append(self._from_json(row, value))
            else:
                for values in chunk.iter_rows(named=True):
                    row += 1
                    batch.append(self._from_columns(row, values))
            yield batch

    def _from_json(self, row: int, value: object) -> _Decoded:
        source = f"{self.path}:{row}"
        if isinstance(value, str):
            value = value.encode("utf-8")
        if not isinstance(value, bytes):
            return source, b"", f"invalid TraceRecord: the record column is {value!r}, not JSON"
        try:
            return source, value, decode(value)
        except TraceError as exc:
            return source, value, str(exc)

    def _from_columns(self, row: int, values: dict[str, Any]) -> _Decoded:
        source = f"{self.path}:{row}"
        try:
            return source, b"", msgspec.convert(_plain(values, _record_type()), TraceRecord)
        except msgspec.ValidationError as exc:
            raw = msgspec.json.encode(values, enc_hook=str)
            return source, raw, _invalid(exc)


@functools.cache
def _record_type() -> mi.StructType:
    info = mi.type_info(TraceRecord)
    assert isinstance(info, mi.StructType)
    return info


def _plain(value: Any, kind: mi.Type) -> Any:
    """A Parquet value in the JSON shape that ``kind`` (part of TraceRecord's type) expects.

    Nulls in structs and maps are dropped (an absent optional field means its default, and maps
    stored as structs fill keys a row lacks with null), and lists of ``{key, value}`` structs
    (the Parquet map layout) become dicts. Anything else is left for msgspec to judge.
    """
    if isinstance(kind, mi.UnionType):
        kind = next(k for k in kind.types if not isinstance(k, mi.NoneType))
    if isinstance(kind, mi.StructType) and isinstance(value, dict):
        fields = {f.encode_name: f.type for f in kind.fields}
        return {
            k: _plain(v, fields[k]) if k in fields else v for k, v in value.items() if v is not None
        }
    if isinstance(kind, mi.DictType):
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if v is not None}
        if isinstance(value, list) and all(
            isinstance(e, dict) and e.keys() == {"key", "value"} for e in value
        ):
            return {e["key"]: e["value"] for e in value if e["value"] is not None}
    if isinstance(kind, mi.ListType) and isinstance(value, list):
        return [_plain(v, kind.item_type) for v in value]
    return value


def write_parquet(path: str | Path, records: Iterable[TraceRecord]) -> int:
    """Write records to ``path`` as nested Parquet columns, atomically; return how many.

    One column per TraceRecord field, structs for nested messages, and header/slice maps as lists
    of ``{key, value}`` structs; every file has the same schema whatever its records hold.
    """
    import polars as pl

    path = Path(path)
    rows = [_row(record) for record in records]
    frame = pl.DataFrame(rows, schema=_parquet_schema(), orient="row")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        frame.write_parquet(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(rows)


def _row(value: Any) -> Any:
    if isinstance(value, msgspec.Struct):
        return {name: _row(getattr(value, name)) for name in value.__struct_fields__}
    if isinstance(value, dict):
        return [{"key": k, "value": v} for k, v in value.items()]
    if isinstance(value, list):
        return [_row(v) for v in value]
    return value


def _parquet_schema() -> dict[str, Any]:
    """Polars schema derived from TraceRecord's type, so the two cannot drift apart."""
    return {f.encode_name: _dtype(f.type) for f in _record_type().fields}


def _dtype(kind: mi.Type) -> Any:
    import polars as pl

    if isinstance(kind, mi.UnionType):
        (only,) = [k for k in kind.types if not isinstance(k, mi.NoneType)]
        return _dtype(only)
    if isinstance(kind, mi.StrType):
        return pl.String()
    if isinstance(kind, mi.IntType):
        return pl.Int64()
    if isinstance(kind, mi.FloatType):
        return pl.Float64()
    if isinstance(kind, mi.BoolType):
        return pl.Boolean()
    if isinstance(kind, mi.ListType):
        return pl.List(_dtype(kind.item_type))
    if isinstance(kind, mi.DictType):
        entry = {"key": _dtype(kind.key_type), "value": _dtype(kind.value_type)}
        return pl.List(pl.Struct(entry))
    if isinstance(kind, mi.StructType):
        return pl.Struct({f.encode_name: _dtype(f.type) for f in kind.fields})
    raise TypeError(f"no Parquet type for {kind!r}")  # a new TraceRecord field type: add it here


# Kafka -----------------------------------------------------------------------------------------


@dataclass
class _Partition:
    pending: set[int] = field(default_factory=set)
    heap: list[int] = field(default_factory=list)  # pending offsets; finished ones popped lazily
    next_offset: int = 0  # one past the highest delivered offset
    committed: int = 0  # what was last committed (or the first delivered offset)


class OffsetTracker:
    """Which offset each partition may commit, given records finished out of order.

    Records are :meth:`delivered` in offset order per partition and :meth:`done` in any order.
    A partition's committable offset is that of its first unfinished record (or one past the
    last delivered one when all are finished): every record before it is finished. Offsets
    need not be contiguous (compacted topics, transaction markers), only increasing; an offset
    at or below one already delivered (the consumer went back, e.g. after a rebalance) starts
    that partition afresh.
    """

    def __init__(self) -> None:
        self._partitions: dict[tuple[str, int], _Partition] = {}

    def delivered(self, position: Position) -> None:
        """Note that the record at ``position`` was handed out and is not finished yet."""
        topic, partition, offset = position
        state = self._partitions.get((topic, partition))
        if state is None or offset < state.next_offset:
            state = self._partitions[topic, partition] = _Partition(committed=offset)
        state.pending.add(offset)
        heapq.heappush(state.heap, offset)
        state.next_offset = offset + 1

    def done(self, position: Position) -> None:
        """Note that the record at ``position`` is finished (unknown positions are ignored)."""
        topic, partition, offset = position
        state = self._partitions.get((topic, partition))
        if state is not None:
            state.pending.discard(offset)

    def committable(self) -> dict[tuple[str, int], int]:
        """The offset to commit per ``(topic, partition)``, for those that moved since."""
        result: dict[tuple[str, int], int] = {}
        for key, state in self._partitions.items():
            heap = state.heap
            while heap and heap[0] not in state.pending:
                heapq.heappop(heap)
            mark = heap[0] if heap else state.next_offset
            if mark > state.committed:
                result[key] = mark
        return result

    def committed(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Record that ``offsets`` (from :meth:`committable`) were committed."""
        for key, offset in offsets.items():
            state = self._partitions.get(key)
            if state is not None:
                state.committed = max(state.committed, offset)

    def forget(self, topic: str, partition: int) -> None:
        """Drop a partition's state (it was handed to another consumer)."""
        self._partitions.pop((topic, partition), None)


class KafkaSource(_Closing):
    """Records from a Kafka topic through an aiokafka consumer (see the module docstring).

    Records arrive in offset order per partition, not in captured_at order across partitions;
    :func:`load_sorted` sorts a bounded read. Iterate once per source.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        dead_letter: DeadLetterFile,
        group_id: str | None = None,
        from_time_ns: int | None = None,
        to_time_ns: int | None = None,
        follow: bool = False,
        limit: int | None = None,
        consumer_options: Mapping[str, Any] | None = None,
        connect_timeout_s: float = _CONNECT_TIMEOUT_S,
    ) -> None:
        self.name = f"kafka://{bootstrap}/{topic}"
        self.bootstrap = bootstrap
        self.topic = topic
        self.dead_letter = dead_letter
        self.group_id = group_id
        self.follow = follow
        self.window = _Window(from_time_ns, to_time_ns, limit)
        self.consumer_options = dict(consumer_options or {})
        self.connect_timeout_s = connect_timeout_s
        self._tracker = OffsetTracker()
        self._consumer: Any = None
        self._closed = False
        self._end: dict[Any, int] = {}  # TopicPartition -> end offset when the run started
        self._settled = False  # group: an assignment is known and no rebalance is running

    def _where(self) -> str:
        return f"Kafka at {self.bootstrap} (topic {self.topic})"

    # starting ------------------------------------------------------------------------------

    async def _connect(self) -> Any:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.errors import KafkaConnectionError

        options: dict[str, Any] = {"client_id": "shadow-replay"}
        if self.group_id is not None and not self.follow:
            # A replay reads everything first (load_sorted), then sends for as long as the
            # recording lasts without polling; aiokafka leaves the group after this much idling.
            options["max_poll_interval_ms"] = _REPLAY_IDLE_MS
        options.update(self.consumer_options)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap.split(","),
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **options,
        )
        try:
            await asyncio.wait_for(consumer.start(), self.connect_timeout_s)
        except BaseException as exc:
            await _quiet_stop(consumer)
            if isinstance(exc, asyncio.CancelledError):
                raise
            if isinstance(exc, TimeoutError | KafkaConnectionError | OSError):
                reason = (
                    f"no answer within {self.connect_timeout_s:g} s"
                    if isinstance(exc, TimeoutError)
                    else str(exc) or type(exc).__name__
                )
                raise ReplayError(
                    f"cannot reach {self._where()}: {reason}; is the broker running? "
                    "(shadow broker)"
                ) from None
            raise ReplayError(f"cannot start a consumer on {self._where()}: {exc!r}") from None
        return consumer

    async def _start(self) -> Any:
        """Connect, find the topic's partitions, snapshot end offsets and assign or subscribe."""
        from aiokafka.errors import KafkaError

        self._consumer = await self._connect()
        try:
            await self._setup()
        except KafkaError as exc:
            await self.aclose()
            raise ReplayError(f"cannot read from {self._where()}: {exc!r}") from None
        except BaseException:
            await self.aclose()
            raise
        return self._consumer

    async def _setup(self) -> None:
        from aiokafka import TopicPartition

        partitions = self._consumer.partitions_for_topic(self.topic)
        while partitions is None:
            topics = await self._consumer.topics()
            if self.topic in topics:
                # Known to the cluster but not to this consumer's cached metadata: a fresh
                # consumer fetches it (aiokafka has no public metadata refresh).
                await _quiet_stop(self._consumer)
                self._consumer = await self._connect()
                partitions = self._consumer.partitions_for_topic(self.topic)
            elif not self.follow:
                listed = ", ".join(sorted(topics)[:10]) or "none"
                raise UsageError(
                    f"topic {self.topic} does not exist on Kafka at {self.bootstrap} (topics "
                    f"there: {listed}); check the name, or capture some traffic first"
                )
            if partitions is None:  # a mirror may start before the first record is captured
                await asyncio.sleep(_TOPIC_POLL_S)
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        if not self.follow:
            self._end = dict(await self._consumer.end_offsets(tps))
        if self.group_id is None:
            self._consumer.assign(tps)
            await self._seek_to_time(tps)
        else:
            self._consumer.subscribe([self.topic], listener=_listener(self))

    async def _seek_to_time(self, tps: Sequence[Any]) -> None:
        """Start each partition at from_time_ns; on failure, from the beginning (then filter)."""
        from aiokafka.errors import KafkaError

        if self.window.from_time_ns is None or not tps:
            return
        target_ms = max(0, self.window.from_time_ns // 1_000_000 - _SEEK_SLACK_MS)
        try:
            found = await self._consumer.offsets_for_times(dict.fromkeys(tps, target_ms))
        except KafkaError as exc:
            log.info("offsets_for_times failed on %s (%r); reading from the start", self.name, exc)
            return
        for tp in tps:
            hit = found.get(tp)
            if hit is None:  # no record at or after the target time yet
                await self._consumer.seek_to_end(tp)
            else:
                self._consumer.seek(tp, hit.offset)

    async def _assigned(self, assigned: set[Any]) -> None:
        if self.window.from_time_ns is not None:
            fresh = [tp for tp in assigned if await self._consumer.committed(tp) is None]
            await self._seek_to_time(fresh)
        self._settled = True

    async def _revoked(self, revoked: set[Any]) -> None:
        """Commit what is finished on partitions about to move, then forget them."""
        from aiokafka.errors import KafkaError

        self._settled = False  # an empty assignment mid-rebalance is not "every partition read"
        keys = {(tp.topic, tp.partition) for tp in revoked}
        offsets = {k: v for k, v in self._tracker.committable().items() if k in keys}
        if offsets:
            try:
                await self._commit_offsets(offsets)
            except (KafkaError, ReplayError) as exc:
                log.warning("commit before rebalance on %s failed: %r", self.name, exc)
        for topic, partition in keys:
            self._tracker.forget(topic, partition)

    # reading -------------------------------------------------------------------------------

    async def __aiter__(self) -> AsyncIterator[SourceItem]:
        from aiokafka.errors import ConsumerStoppedError, KafkaError

        if self._closed:
            return
        consumer = self._consumer or await self._start()
        limit, count = self.window.limit, 0
        while not self._closed and (self.follow or not await self._finished()):
            try:
                batches = await consumer.getmany(timeout_ms=_POLL_MS)
            except ConsumerStoppedError:
                return
            except KafkaError as exc:
                raise ReplayError(f"reading from {self._where()} failed: {exc!r}") from None
            for tp, messages in batches.items():
                end = None if self.follow else self._end.get(tp, 0)
                for message in messages:
                    if end is not None and message.offset >= end:
                        consumer.pause(tp)  # produced after the run started: next run's
                        break
                    item = self._accept(message)
                    if item is None:
                        continue
                    yield item
                    count += 1
                    if limit is not None and count >= limit:
                        return

    def _accept(self, message: Any) -> SourceItem | None:
        """The message as an item, or None when it is dead-lettered or outside the window."""
        position: Position = (message.topic, message.partition, message.offset)
        track = self.group_id is not None
        if track:
            self._tracker.delivered(position)
        value: bytes | None = message.value
        try:
            if value is None:
                raise TraceError("invalid TraceRecord: the message has no value (a tombstone)")
            record = decode(value)
        except TraceError as exc:
            source = f"{message.topic}/{message.partition}@{message.offset}"
            self.dead_letter.write(value or b"", reason=str(exc), source=source)
        else:
            if self.window.holds(record):
                return SourceItem(record, position)
        if track:  # skipped records need no results: finished at once
            self._tracker.done(position)
        return None

    async def _finished(self) -> bool:
        """Whether every assigned partition was read up to the end offsets of the snapshot."""
        from aiokafka.errors import IllegalStateError

        if self.group_id is not None and not self._settled:
            return False
        consumer = self._consumer
        try:
            for tp in consumer.assignment():
                if await consumer.position(tp) < self._end.get(tp, 0):
                    return False
        except IllegalStateError:  # a rebalance took the partition meanwhile
            return False
        return True

    # committing and closing ----------------------------------------------------------------

    async def commit(self, positions: Sequence[Position]) -> None:
        """Commit, per partition, up to the first record that is not finished yet.

        Without a group this does nothing. A partition this consumer no longer owns (after a
        rebalance) is skipped: its new owner re-reads those records.
        """
        if self.group_id is None or self._consumer is None:
            return
        for position in positions:
            self._tracker.done(position)
        offsets = self._tracker.committable()
        if offsets:
            await self._commit_offsets(offsets)

    async def _commit_offsets(self, offsets: Mapping[tuple[str, int], int]) -> None:
        from aiokafka import TopicPartition
        from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

        owned = self._consumer.assignment()
        request = {TopicPartition(t, p): offset for (t, p), offset in offsets.items()}
        request = {tp: offset for tp, offset in request.items() if tp in owned}
        if not request:
            return
        try:
            await self._consumer.commit(request)
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("commit on %s skipped, the group rebalanced: %r", self.name, exc)
            return
        except KafkaError as exc:
            where = ", ".join(f"{tp.partition}@{offset}" for tp, offset in request.items())
            raise ReplayError(
                f"committing offsets {where} on {self._where()} failed: {exc!r}"
            ) from None
        self._tracker.committed({(tp.topic, tp.partition): o for tp, o in request.items()})

    async def aclose(self) -> None:
        """Stop the consumer (leaving the group); a running iteration ends. Safe twice."""
        self._closed = True
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await _quiet_stop(consumer)


def _listener(source: KafkaSource) -> Any:
    """A rebalance listener bound to ``source`` (aiokafka insists on its base class)."""
    from aiokafka import ConsumerRebalanceListener

    class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        async def on_partitions_revoked(self, revoked: set[Any]) -> None:
            await source._revoked(revoked)

        async def on_partitions_assigned(self, assigned: set[Any]) -> None:
            await source._assigned(assigned)

    return _Listener()


async def _quiet_stop(consumer: Any, timeout_s: float = 5.0) -> None:
    try:
        await asyncio.wait_for(consumer.stop(), timeout_s)
    except Exception as exc:  # stopping a consumer whose broker is gone may fail; nothing to do
        log.debug("kafka consumer stop failed: %r", exc)


# Ordering --------------------------------------------------------------------------------------


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
