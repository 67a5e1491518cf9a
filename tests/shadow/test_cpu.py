"""yield_cpu: a process that can wait takes the idle scheduling class."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from shadow.cpu import yield_cpu


def _yield(conn: Connection) -> None:
    conn.send((yield_cpu(), os.sched_getscheduler(0)))


def _in_child(target: Callable[[Connection], None]) -> Any:
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    process = ctx.Process(target=target, args=(theirs,))
    process.start()
    try:
        assert ours.poll(30), "the child did not answer"
        return ours.recv()
    finally:
        process.join(30)


def test_yield_cpu_takes_the_idle_class() -> None:
    assert _in_child(_yield) == ("idle", os.SCHED_IDLE)
