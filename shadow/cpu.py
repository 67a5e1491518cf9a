"""Keeping shadow's background processes out of the way of the work they serve.

The sidecar's record worker and the replayer's results writer do work that can wait: the
sidecar's requests and the replayer's sends cannot. :func:`yield_cpu` puts the calling
process in Linux's idle scheduling class (SCHED_IDLE: any other task that wants the CPU runs
first, and takes it at once), or, where that is not available, lowers its priority with
``nice``.
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
