"""Close-on-exit: the context-manager half of every object that holds a resource.

A class that owns a file, connection or task defines ``close()`` (or ``async aclose()``), safe
to call twice, and inherits ``with`` (or ``async with``) support from :class:`Closing` (or
:class:`AsyncClosing`) instead of writing ``__enter__``/``__exit__`` again. Leaving the block
closes the object whether or not it raised; the exception, if any, propagates. A service
that runs in the background inherits :class:`Running` instead: entering starts it, leaving
stops it.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

__all__ = ["AsyncClosing", "Closing", "Running"]


class Closing(ABC):
    """``with obj:`` calls ``obj.close()`` on the way out."""

    __slots__ = ()

    @abstractmethod
    def close(self) -> None:
        """Release what the object holds; safe to call twice."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClosing(ABC):
    """``async with obj:`` awaits ``obj.aclose()`` on the way out."""

    __slots__ = ()

    @abstractmethod
    async def aclose(self) -> None:
        """Release what the object holds; safe to call twice."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class Running(AsyncClosing):
    """A service started on entry and stopped on exit, in ``with`` or ``async with``.

    For objects that run something in the background (a server thread, a broker process):
    ``start()`` blocks until it is ready and ``stop()`` until it is gone, both safe to call
    twice. ``async with`` runs them in a worker thread, so the event loop keeps serving.
    """

    __slots__ = ()

    @abstractmethod
    def start(self) -> None:
        """Start and wait until ready."""

    @abstractmethod
    def stop(self) -> None:
        """Stop and wait until stopped; safe to call twice."""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def aclose(self) -> None:
        """Stop without blocking the event loop; safe to call twice."""
        await asyncio.to_thread(self.stop)
