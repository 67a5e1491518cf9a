"""The Kafka consumer source: TraceRecords from a topic, for the replayer and the live mirror.

With ``follow=False`` (a replay) it snapshots the end offsets when it starts, reads every
partition it is assigned up to them and then on until the partition returns nothing for a quiet
period, or shows a record produced after the snapshot: a reported end offset is never trusted
alone (:mod:`shadow.kafka.reads`). :attr:`KafkaSource.report` says per partition what was read,
and a partition that stops short of its reported end fails the read with a
:class:`~shadow.errors.ReplayError`. ``follow=True`` (a mirror) never stops by itself.

Without ``group_id`` every partition is assigned to this consumer, each run starts at the
beginning (or ``from_time_ns``) and ``commit()`` does nothing. With ``group_id`` the
consumer joins that group and Kafka splits the partitions across its members, so replayer
processes started with the same group (and the same start time, docs/architecture.md,
"Pacing") each replay a share. Nothing is committed automatically: the caller commits positions
once their results are durable, and :class:`~shadow.kafka.offsets.OffsetTracker` advances a
partition only through a prefix of finished records. A restart or rebalance re-reads what was
not committed (at-least-once; results are idempotent on ``(run_id, trace_id, arm)``), and a
committed offset takes precedence over ``from_time_ns``. Members should join together: one
that joins after another has read (but not committed) a partition reads it again. See
docs/architecture.md, "Kafka".

A message that fails validation goes to the dead-letter file with its reason and its origin
(``topic/partition@offset``), through the same decoding loop as the file sources
(:class:`~shadow.trace.decoding.RowReader`), and reading goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from shadow.closing import AsyncClosing
from shadow.errors import ReplayError, UsageError
from shadow.kafka._client import stop_quietly
from shadow.kafka.address import KafkaAddress
from shadow.kafka.offsets import OffsetTracker
from shadow.kafka.reads import READ_QUIET_S, READ_STALL_S, ReadReport
from shadow.trace.deadletter import DeadLetterFile
from shadow.trace.decoding import Row, RowReader, Window, decode_row
from shadow.trace.source import Position, SourceItem

__all__ = ["KafkaSource"]

log = logging.getLogger("shadow.replay.replayer")

_CONNECT_TIMEOUT_S = 10.0
_POLL_MS = 200
_TOPIC_POLL_S = 1.0
_REPLAY_IDLE_MS = 24 * 3600 * 1000
# A bounded read decides a partition is quiet after READ_QUIET_S without records; an empty fetch
# must come back well within that, so the broker may hold it this long (aiokafka's default: 500).
_BOUNDED_FETCH_WAIT_MS = 100
# Kafka timestamps are the producer's send time (or the broker's append time), a little after
# captured_at; seeking this far before from_time_ns tolerates clock skew between sidecar and broker.
_SEEK_SLACK_MS = 60_000
_TOMBSTONE = "invalid TraceRecord: the message has no value (a tombstone)"


class KafkaSource(AsyncClosing):
    """Records from a Kafka topic through an aiokafka consumer (see the module docstring).

    Records arrive in offset order per partition, not in captured_at order across partitions;
    :func:`shadow.replay.sources.load_sorted` sorts a bounded read. Iterate once per source.
    """

    def __init__(
        self,
        address: KafkaAddress,
        *,
        dead_letter: DeadLetterFile,
        group_id: str | None = None,
        from_time_ns: int | None = None,
        to_time_ns: int | None = None,
        follow: bool = False,
        limit: int | None = None,
        consumer_options: Mapping[str, Any] | None = None,
        connect_timeout_s: float = _CONNECT_TIMEOUT_S,
        read_quiet_s: float = READ_QUIET_S,
        read_stall_s: float = READ_STALL_S,
    ) -> None:
        if not 0 < read_quiet_s < read_stall_s:
            raise UsageError(
                f"read_quiet_s is {read_quiet_s:g} and read_stall_s {read_stall_s:g}; "
                "use 0 < read_quiet_s < read_stall_s",
                setting="read_quiet_s",
            )
        self.address = address
        self.name = str(address)
        self.bootstrap = address.bootstrap
        self.topic = address.topic
        self.dead_letter = dead_letter
        self.group_id = group_id
        self.follow = follow
        self.window = Window(from_time_ns, to_time_ns, limit)
        self.consumer_options = dict(consumer_options or {})
        self.connect_timeout_s = connect_timeout_s
        self.read_quiet_s = read_quiet_s
        self.read_stall_s = read_stall_s
        self.report = ReadReport(self.name)
        """A bounded read's account per partition (filled while it reads)."""
        self._tracker = OffsetTracker()
        self._reader = RowReader(dead_letter=dead_letter, window=self.window)
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
        if not self.follow:
            options["fetch_max_wait_ms"] = _BOUNDED_FETCH_WAIT_MS
        options.update(self.consumer_options)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.address.servers,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **options,
        )
        try:
            await asyncio.wait_for(consumer.start(), self.connect_timeout_s)
        except BaseException as exc:
            await stop_quietly(consumer, log, what="consumer")
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
                await stop_quietly(self._consumer, log, what="consumer")
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
            self.report.snapshot_ms = int(time.time() * 1000)  # after the broker answered
        if self.group_id is None:
            self._consumer.assign(tps)
            await self._seek_to_time(tps)
            self._expect(tps)
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
        self._expect(assigned)
        self._settled = True

    def _expect(self, tps: Any) -> None:
        if not self.follow:
            now = time.monotonic()
            for tp in tps:
                self.report.expect(tp.partition, self._end.get(tp, 0), now)

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
            self.report.forget(partition)

    # reading -------------------------------------------------------------------------------

    async def __aiter__(self) -> AsyncIterator[SourceItem]:
        from aiokafka.errors import ConsumerStoppedError, KafkaError

        if self._closed:
            return
        consumer = self._consumer or await self._start()
        reader = self._reader
        while not self._closed and (self.follow or not await self._finished()):
            try:
                batches = await consumer.getmany(timeout_ms=_POLL_MS)
            except ConsumerStoppedError:
                return
            except KafkaError as exc:
                raise ReplayError(f"reading from {self._where()} failed: {exc!r}") from None
            for tp, messages in batches.items():
                for message in messages:
                    if not self.follow and not self._in_snapshot(tp, message):
                        consumer.pause(tp)  # produced after the read started: next run's
                        break
                    item = self._accept(message)
                    if item is None:
                        continue
                    yield item
                    if reader.full:
                        self.report.limited = True
                        return
        if not self._closed and self.report.stalled:
            raise ReplayError(self.report.failure(self.read_stall_s))

    def _in_snapshot(self, tp: Any, message: Any) -> bool:
        """Whether a bounded read keeps ``message``; accounts for it in the report if so.

        Below the reported end offset every record is kept. Past it (the embedded broker
        reports an offset inside the last batch), a record stamped at or after the snapshot
        was produced after the read started; it ends the partition's read.
        """
        account = self.report.partitions.get(tp.partition)
        if account is None:  # a partition this consumer no longer owns (rebalance)
            return True
        if message.offset >= account.reported_end and message.timestamp >= self.report.snapshot_ms:
            account.ended = "snapshot"
            account.position = message.offset
            return False
        account.read(message.offset, time.monotonic())
        return True

    def _accept(self, message: Any) -> SourceItem | None:
        """The message as an item, or None when it is dead-lettered or outside the window."""
        position: Position = (message.topic, message.partition, message.offset)
        track = self.group_id is not None
        if track:
            self._tracker.delivered(position)
        origin = f"{message.topic}/{message.partition}@{message.offset}"
        value: bytes | None = message.value
        row = Row(origin, b"", _TOMBSTONE) if value is None else decode_row(origin, value)
        record = self._reader.accept(row)
        if record is not None:
            return SourceItem(record, position)
        if track:  # skipped records need no results: finished at once
            self._tracker.done(position)
        return None

    async def _finished(self) -> bool:
        """Whether every assigned partition is done (:meth:`PartitionRead.settle`)."""
        from aiokafka.errors import IllegalStateError

        if self.group_id is not None and not self._settled:
            return False
        consumer = self._consumer
        now = time.monotonic()
        done = True
        try:
            for tp in consumer.assignment():
                account = self.report.partitions.get(tp.partition)
                if account is None:
                    return False  # assigned, but the listener has not run yet
                position = await consumer.position(tp)
                if not account.settle(
                    position, now, quiet_s=self.read_quiet_s, stall_s=self.read_stall_s
                ):
                    done = False
        except IllegalStateError:  # a rebalance took the partition meanwhile
            return False
        return done

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
            await stop_quietly(consumer, log, what="consumer")


def _listener(source: KafkaSource) -> Any:
    """A rebalance listener bound to ``source`` (aiokafka insists on its base class)."""
    from aiokafka import ConsumerRebalanceListener

    class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        async def on_partitions_revoked(self, revoked: set[Any]) -> None:
            await source._revoked(revoked)

        async def on_partitions_assigned(self, assigned: set[Any]) -> None:
            await source._assigned(assigned)

    return _Listener()
