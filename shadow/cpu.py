"""Keeping a background process out of the way of the work it serves.

The sidecar's record worker does work that can wait, and may be shed: the requests it records
cannot wait. :func:`yield_cpu` puts the calling process in Linux's idle scheduling class for
good (SCHED_IDLE: any other task that wants the CPU runs first, and takes it at once), or,
where that is not available, lowers its priority with ``nice``.

Not for work that must keep up: the replayer's results writer stays at ``nice`` 10
(shadow/results/process.py). In the idle class it starved whenever the sending loop shared its
core or both cores were busy, and the run's sends then waited for rows to be written (at 4,000
sends/s with the writer on the loop's core, lag p99 110 ms against 4 ms at ``nice`` 10).
"""

from __future__ import annotations

import logging
import os

__all__ = ["yield_cpu"]

log = logging.getLogger("shadow")


def yield_cpu(fallback_nice: int = 10) -> str:
    """Take the idle class (else ``nice(fallback_nice)``); return which: "idle", "nice" or ""."""
    if hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return "idle"
        except OSError as exc:
            log.info("cannot take the idle scheduling class (%s); lowering priority instead", exc)
    try:
        os.nice(fallback_nice)
        return "nice"
    except OSError as exc:
        log.warning("cannot lower this process's CPU priority: %s", exc)
        return ""
