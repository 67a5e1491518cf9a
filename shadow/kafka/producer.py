"""The Kafka producer behind capture's sink: delivers batches of encoded records to a topic.

:class:`KafkaSink` implements capture's ``TraceSink`` protocol: it delivers a batch of
``(key, value)`` pairs or raises :class:`~shadow.errors.SinkError`, and never retries by itself
(the tee decides what a failure means: spool to disk, try again later).

An acknowledgement is not proof that the broker holds a record (a broker restarted empty
within the timeouts acknowledges produce requests for partitions it no longer has), so every
acknowledged record stays in a bounded :class:`~shadow.kafka.ledger.DeliveryLedger` until
:meth:`KafkaSink.confirm` has checked that the broker holds it
(:func:`~shadow.kafka.holding.check_holding`). A broker found to have lost records hands
every unconfirmed one back to the caller, to be delivered again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from shadow.closing import AsyncClosing
from shadow.config import KafkaConfig
from shadow.errors import SinkError
from shadow.kafka._client import stop_quietly
from shadow.kafka.address import KafkaAddress
from shadow.kafka.holding import check_holding
from shadow.kafka.ledger import DeliveryLedger

__all__ = ["KafkaSink"]

log = logging.getLogger("shadow.capture")


class KafkaSink(AsyncClosing):
    """Produces records to a Kafka topic with aiokafka.

    The producer is started lazily and re-created after a failed start, so a sidecar comes up
    (and keeps serving) while Kafka is down. ``delivery_timeout_s`` bounds how long one batch may
    take, acknowledgements included; a batch that times out is reported as failed even though
    some of it may still arrive later (the tee's delivery is at-least-once).
    """

    process_safe: ClassVar[bool] = True
    """Unopened, it pickles: the sidecar opens it in its record worker process."""

    def __init__(
        self,
        config: KafkaConfig,
        *,
        delivery_timeout_s: float = 5.0,
        ledger: DeliveryLedger | None = None,
    ) -> None:
        self.address = KafkaAddress(config.bootstrap, config.topic)
        self.name = str(self.address)
        self.config = config
        self.delivery_timeout_s = delivery_timeout_s
        self.ledger = DeliveryLedger() if ledger is None else ledger
        self.losses = 0
        """How many times the broker was found to have lost acknowledged records."""
        self._producer: Any = None
        self._cluster_id: str | None = None
        self._lost: list[tuple[bytes, bytes]] = []

    @property
    def unconfirmed(self) -> int:
        """Records acknowledged but not yet known to be held (lost ones included until taken)."""
        return self.ledger.records + len(self._lost)

    @property
    def unchecked(self) -> int:
        """Acknowledged records the ledger's bound made it forget before a check confirmed them."""
        return self.ledger.unchecked

    async def _producer_started(self) -> Any:
        if self._producer is not None:
            return self._producer
        from aiokafka import AIOKafkaProducer

        c = self.config
        producer = AIOKafkaProducer(
            bootstrap_servers=c.bootstrap,
            acks="all" if c.acks == "all" else int(c.acks),
            compression_type=None if c.compression == "none" else c.compression,
            linger_ms=c.linger_ms,
            enable_idempotence=c.idempotence,
            request_timeout_ms=max(1000, int(self.delivery_timeout_s * 1000)),
            max_batch_size=1 << 20,
            client_id="shadow-capture",
        )
        try:
            await asyncio.wait_for(producer.start(), self.delivery_timeout_s)
        except BaseException as exc:
            await stop_quietly(producer, log, what="producer")
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise SinkError(f"cannot connect to Kafka at {c.bootstrap}: {exc!r}") from None
        self._producer = producer
        return producer

    async def send_batch(self, batch: Sequence[tuple[bytes, bytes]]) -> None:
        """Deliver every ``(key, value)`` in the batch or raise :class:`SinkError`."""
        try:
            await asyncio.wait_for(self._send(batch), self.delivery_timeout_s)
        except SinkError:
            raise
        except TimeoutError:
            await self._discard()
            raise SinkError(
                f"Kafka did not acknowledge {len(batch)} records on {self.config.topic} within "
                f"{self.delivery_timeout_s} s"
            ) from None
        except Exception as exc:  # aiokafka's KafkaError and connection errors
            await self._discard()
            raise SinkError(f"Kafka produce to {self.config.topic} failed: {exc!r}") from None

    async def _discard(self) -> None:
        """Drop the producer after a failure; the next batch starts a fresh one.

        A fresh producer re-reads the cluster metadata. That matters when a broker came back
        empty (the embedded in-memory broker after a restart accepts produce requests for a
        partition it no longer has and the data is lost), and costs nothing otherwise.
        """
        producer, self._producer = self._producer, None
        if producer is not None:
            await stop_quietly(producer, log, what="producer", timeout_s=1.0)

    async def _send(self, batch: Sequence[tuple[bytes, bytes]]) -> None:
        producer = await self._producer_started()
        send = producer.send
        topic = self.config.topic
        futures = [await send(topic, value, key=key) for key, value in batch]
        acks = await asyncio.gather(*futures)
        ledger = self.ledger
        for ack in acks:
            if ledger.went_backwards(ack.partition, ack.offset):
                await self._lose(
                    f"partition {ack.partition} acknowledged offset {ack.offset}, at or below one "
                    "it acknowledged before"
                )
                raise SinkError(
                    f"Kafka at {self.config.bootstrap} came back empty (partition "
                    f"{ack.partition} of {topic} restarted at offset {ack.offset}); this batch "
                    f"and {len(self._lost)} unconfirmed records are delivered again"
                )
        for (key, value), ack in zip(batch, acks, strict=True):
            ledger.acknowledge(ack.partition, ack.offset, key, value)

    async def confirm(self) -> list[tuple[bytes, bytes]]:
        """Check that the broker holds the unconfirmed records; return those it lost.

        Confirmed records leave the ledger. When the broker lost records (see
        :func:`~shadow.kafka.holding.check_holding`) every unconfirmed record is returned, for
        the caller to deliver again, and the producer is replaced so it reads fresh metadata.
        Raises :class:`SinkError` when the broker cannot be asked.
        """
        pending = self.ledger.pending()
        if pending and not self._lost:
            epoch = self.ledger.epoch
            try:
                producer = await self._producer_started()
                holding = await asyncio.wait_for(
                    check_holding(
                        producer.client, self.config.topic, pending, cluster_id=self._cluster_id
                    ),
                    self.delivery_timeout_s,
                )
            except SinkError:
                raise
            except Exception as exc:  # a timeout, a connection error, a stopped producer
                raise SinkError(
                    f"cannot check what Kafka at {self.config.bootstrap} holds: {exc!r}"
                ) from None
            if self.ledger.epoch == epoch:  # no loss was found meanwhile by a send
                self._cluster_id = holding.cluster_id or self._cluster_id
                if holding.lost:
                    await self._lose(holding.lost)
                else:
                    for partition, end in holding.confirmed.items():
                        self.ledger.confirm(partition, end)
        lost, self._lost = self._lost, []
        return lost

    async def _lose(self, reason: str) -> None:
        """The broker lost records: take every unconfirmed one back and start a fresh producer."""
        self.losses += 1
        self._lost.extend(self.ledger.take_all())
        log.warning(
            "Kafka at %s lost acknowledged records (%s); %d unconfirmed records are delivered "
            "again (records it had already confirmed are gone with it)",
            self.config.bootstrap,
            reason,
            len(self._lost),
        )
        await self._discard()

    async def aclose(self) -> None:
        """Flush and stop the producer; safe to call twice."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await stop_quietly(producer, log, what="producer")
