"""Where captured records go: Kafka or a JSONL file, behind one protocol.

A sink delivers a batch of ``(key, value)`` pairs or raises :class:`SinkError`; it never
retries by itself. The tee decides what a failure means (spool to disk, try again later).
The Kafka sink is the producer in :mod:`shadow.kafka.producer` (only ``shadow.kafka`` talks
Kafka); it is re-exported here beside the file sink.

A sink whose acknowledgement does not prove the record is held (Kafka) is also a
:class:`ConfirmingSink`: the tee asks it from time to time which sent records the broker
still holds, and spools again the ones it lost. A file sink's write is held once it returns.

A sink class with ``process_safe = True`` (both of these) pickles while unopened, so the
sidecar opens it in its record worker process (:mod:`capture.worker`) and the serving loop
never runs the sink's client. Any other sink (a test's fake, an embedder's own) runs the
tee on the serving loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import IO, ClassVar, Protocol, runtime_checkable

from shadow.closing import AsyncClosing
from shadow.errors import SinkError
from shadow.kafka.producer import KafkaSink

__all__ = ["ConfirmingSink", "FileSink", "KafkaSink", "SinkError", "TraceSink"]


class TraceSink(Protocol):
    """Delivers encoded records; the swap point between Kafka, files and test fakes."""

    name: str

    async def send_batch(self, batch: Sequence[tuple[bytes, bytes]]) -> None:
        """Deliver every ``(key, value)`` in the batch or raise :class:`SinkError`."""
        ...

    async def aclose(self) -> None:
        """Flush and release resources; safe to call twice."""
        ...


@runtime_checkable
class ConfirmingSink(TraceSink, Protocol):
    """A sink that can tell which acknowledged records its broker still holds."""

    @property
    def unconfirmed(self) -> int:
        """Records acknowledged but not yet known to be held."""
        ...

    @property
    def unchecked(self) -> int:
        """Acknowledged records forgotten unconfirmed (a bounded window overflowed)."""
        ...

    async def confirm(self) -> list[tuple[bytes, bytes]]:
        """Check the unconfirmed records; return those the broker lost, or raise SinkError."""
        ...


class FileSink(AsyncClosing):
    """Appends records to a JSONL file (one value per line; keys are not stored)."""

    process_safe: ClassVar[bool] = True
    """Unopened, it pickles: the sidecar opens it in its record worker process."""

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
        """Append every value in the batch or raise :class:`SinkError`."""
        data = b"".join(value + b"\n" for _, value in batch)
        try:
            await asyncio.to_thread(self._write, data)
        except OSError as exc:
            raise SinkError(f"cannot append to {self.path}: {exc.strerror}") from None

    async def aclose(self) -> None:
        """Close the file; safe to call twice."""
        fh, self._fh = self._fh, None
        if fh is not None:
            await asyncio.to_thread(fh.close)
