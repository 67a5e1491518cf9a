"""Ctrl-C and SIGTERM for a running replay or mirror: the first stops it gracefully, the second now.

The first signal asks the run to stop scheduling (sends under way finish within the grace
period: ``request_stop``); a second one cancels them (``force_stop``). Used by ``shadow replay``,
``shadow mirror`` and each ``--workers`` process, so they all stop the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import Protocol

__all__ = ["Stoppable", "stop_on_signals"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stoppable(Protocol):
    """A run that can be stopped gracefully or at once (a Replayer, a Mirror)."""

    def request_stop(self) -> None: ...

    def force_stop(self) -> None: ...


@contextlib.contextmanager
def stop_on_signals(
    run: Stoppable, *, on_first: Callable[[], None] | None = None
) -> Iterator[None]:
    """While inside, SIGINT/SIGTERM stop ``run`` (first: gracefully, after ``on_first``, such as
    printing what happens; again: at once). Call it with the event loop running."""
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            run.force_stop()
            return
        if on_first is not None:
            on_first()
        run.request_stop()

    for sig in _SIGNALS:
        loop.add_signal_handler(sig, on_signal)
    try:
        yield
    finally:
        for sig in _SIGNALS:
            loop.remove_signal_handler(sig)
