"""Where captured records go: Kafka (aiokafka) or a JSONL file, behind one protocol.

A sink delivers a batch of ``(key, value)`` pairs or raises :class:`SinkError`; it never
retries by itself. The tee decides what a failure means (spool to disk, try again later).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from shadow.config import KafkaConfig
from shadow.errors import CaptureError

__all__ = ["FileSink", "KafkaSink", "SinkError", "TraceSink"]

log = logging.getLogger("shadow.capture")


class SinkError(CaptureError):
    """A batch could not be delivered (the sink is down, slow or refused it)."""


class TraceSink(Protocol):
    """Delivers encoded records; the swap point between Kafka, files and test fakes."""

    name: str

    async def send_batch(self, batch: Sequence[tuple[bytes, bytes]]) -> None:
        """Deliver every ``(key, value)`` in the batch or raise :class:`SinkError`."""
        ...

    async def aclose(self) -> None:
        """Flush and release resources; safe to call twice."""
        ...


class KafkaSink:
    """Produces records to a Kafka topic with aiokafka.

    The producer is started lazily and re-created after a failed start, so a sidecar comes up
    (and keeps serving) while Kafka is down. ``delivery_timeout_s`` bounds how long one batch may
    take, acknowledgements included; a batch that times out is reported as failed even though
    some of it may still arrive later (the tee's delivery is at-least-once).
    """

    def __init__(self, config: KafkaConfig, *, delivery_timeout_s: float = 5.0) -> None:
        self.name = f"kafka://{config.bootstrap}/{config.topic}"
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
            await _quiet_stop(producer)
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise SinkError(f"cannot connect to Kafka at {c.bootstrap}: {exc!r}") from None
        self._producer = producer
        return producer

    async def send_batch(self, batch: Sequence[tuple[bytes, bytes]]) -> None:
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
            await _quiet_stop(producer, timeout_s=1.0)

    async def _send(self, batch: Sequence[tuple[bytes, bytes]]) -> None:
        producer = await self._producer_started()
        send = producer.send
        topic = self.config.topic
        futures = [await send(topic, value, key=key) for key, value in batch]
        await asyncio.gather(*futures)

    async def aclose(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await _quiet_stop(producer)


async def _quiet_stop(producer: Any, timeout_s: float = 5.0) -> None:
    try:
        await asyncio.wait_for(producer.stop(), timeout_s)
    except Exception as exc:  # stopping a producer whose broker is gone may fail; nothing to do
        log.debug("kafka producer stop failed: %r", exc)


class FileSink:
    """Appends records to a JSONL file (one value per line; keys are not stored)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = f"file://{self.path}"
        self._fh: IO[bytes] | None = None

    def _write(self, data: bytes) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("ab")
        self._fh.write(data)
        self._fh.flush()

    async def send_batch(self, batch: Sequence[tuple[bytes, bytes]]) -> None:
        data = b"".join(value + b"\n" for _, value in batch)
        try:
            await asyncio.to_thread(self._write, data)
        except OSError as exc:
            raise SinkError(f"cannot append to {self.path}: {exc.strerror}") from None

    async def aclose(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            await asyncio.to_thread(fh.close)
