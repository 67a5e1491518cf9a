"""The Kafka producer behind capture's sink: delivers batches of encoded records to a topic.

:class:`KafkaSink` implements capture's ``TraceSink`` protocol: it delivers a batch of
``(key, value)`` pairs or raises :class:`~shadow.errors.SinkError`, and never retries by itself
(the tee decides what a failure means: spool to disk, try again later).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from shadow.closing import AsyncClosing
from shadow.config import KafkaConfig
from shadow.errors import SinkError
from shadow.kafka._client import stop_quietly
from shadow.kafka.address import KafkaAddress

__all__ = ["KafkaSink"]

log = logging.getLogger("shadow.capture")


class KafkaSink(AsyncClosing):
    """Produces records to a Kafka topic with aiokafka.

    The producer is started lazily and re-created after a failed start, so a sidecar comes up
    (and keeps serving) while Kafka is down. ``delivery_timeout_s`` bounds how long one batch may
    take, acknowledgements included; a batch that times out is reported as failed even though
    some of it may still arrive later (the tee's delivery is at-least-once).
    """

    def __init__(self, config: KafkaConfig, *, delivery_timeout_s: float = 5.0) -> None:
        self.address = KafkaAddress(config.bootstrap, config.topic)
        self.name = str(self.address)
        self.config = config
        self.delivery_timeout_s = delivery_timeout_s
        self._producer: Any = None

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
        await asyncio.gather(*futures)

    async def aclose(self) -> None:
        """Flush and stop the producer; safe to call twice."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await stop_quietly(producer, log, what="producer")
