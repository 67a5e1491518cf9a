"""The bounded queue in front of a tee: taking exchanges never blocks, they leave in batches.

:class:`~capture.tee.Tee` (building on its own loop) and :class:`~capture.worker.ProcessTee`
(handing over to the record worker) both take exchanges through one :class:`Intake`.
"""

from __future__ import annotations

import asyncio

from capture.exchange import Exchange
from capture.metrics import CaptureMetrics

__all__ = ["BATCH_BYTES", "Intake", "body_bytes"]

BATCH_BYTES = 4 * 1024 * 1024
"""A batch takes no more exchanges once their bodies hold this many bytes."""


def body_bytes(exchange: Exchange) -> int:
    """The body bytes an exchange holds (request and response, as kept)."""
    return len(exchange.request_body.buf) + len(exchange.response_body.buf)


class Intake:
    """Up to ``queue_size`` exchanges waiting; past that, and once closed, dropped and counted."""

    def __init__(self, metrics: CaptureMetrics, *, queue_size: int, batch_max: int) -> None:
        self.metrics = metrics
        self.batch_max = batch_max
        self.closed = False
        self._queue: asyncio.Queue[Exchange] = asyncio.Queue(queue_size)

    def __len__(self) -> int:
        return self._queue.qsize()

    def submit(self, exchange: Exchange) -> None:
        """Take an exchange; never blocks, never raises (drops and counts instead)."""
        if self.closed:
            self.metrics.records_dropped.labels("closed").inc()
            return
        try:
            self._queue.put_nowait(exchange)
        except asyncio.QueueFull:
            self.metrics.records_dropped.labels("queue_full").inc()

    async def next_batch(self, linger_s: float = 0.0) -> list[Exchange]:
        """The next batch: waits for one exchange, then up to ``linger_s`` for company.

        A batch stops at ``batch_max`` exchanges or :data:`BATCH_BYTES` of bodies. Call
        :meth:`done` with its length once it has been dealt with.
        """
        first = await self._queue.get()
        if linger_s and not self.closed and self._queue.qsize() + 1 < self.batch_max:
            await asyncio.sleep(linger_s)  # gathering a batch: one write, not one per exchange
        return self._take([first])

    def take_all(self) -> list[Exchange]:
        """Every exchange still waiting, at once (at shutdown); not to be passed to :meth:`done`."""
        return self._take([], limit=False)

    def done(self, n: int) -> None:
        """``n`` exchanges of batches from :meth:`next_batch` were sent, spooled or dropped."""
        for _ in range(n):
            self._queue.task_done()

    async def join(self) -> None:
        """Wait until every exchange taken so far is done."""
        await self._queue.join()

    def _take(self, batch: list[Exchange], *, limit: bool = True) -> list[Exchange]:
        size = sum(body_bytes(ex) for ex in batch)
        while not limit or (len(batch) < self.batch_max and size < BATCH_BYTES):
            try:
                exchange = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            batch.append(exchange)
            size += body_bytes(exchange)
        return batch
