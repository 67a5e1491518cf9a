"""Child processes that die with their parent: no orphans after a ``kill -9``.

A child started with :func:`die_with_parent` as its ``preexec_fn`` asks the Linux kernel to
send it SIGKILL when its parent goes (``prctl(PR_SET_PDEATHSIG, SIGKILL)``), however the parent
ends, SIGKILL included. That survives ``exec``, so it holds for the program the child runs
(the embedded broker's Tansu process, the demo's servers).

The kernel's "parent" is the *thread* that forked the child, not the process: a child forked
by a worker thread is killed when that thread exits, even though the process lives on.
:func:`spawn` therefore forks from one thread that lives as long as the process (the calling
thread when it is the main thread); asyncio's ``create_subprocess_exec`` forks on the event
loop's thread, so pass :func:`die_with_parent` there only from a loop that runs until its
children are stopped (``asyncio.run`` in the main thread, as ``shadow demo`` does).

Elsewhere (macOS, Windows) there is no such request: :func:`die_with_parent` returns None and
children are stopped only by the parent's own shutdown (SIGTERM, Ctrl-C), as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["die_with_parent", "spawn"]

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

_spawner: ThreadPoolExecutor | None = None
_spawner_lock = threading.Lock()


def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, looked up before any fork (the child must not load libraries)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        prctl: Callable[..., int] = libc.prctl
    except (OSError, AttributeError):
        return None
    return prctl


_PRCTL = _prctl()


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child SIGKILLed when its parent exits; None off Linux.

    Checks the parent after the request: if it died between the fork and the ``prctl`` call
    (the request would then never fire), the child kills itself before running anything.
    """
    prctl = _PRCTL
    if prctl is None:
        return None
    parent = os.getpid()
    kill = int(signal.SIGKILL)

    def preexec() -> None:  # runs in the child between fork and exec: nothing but syscalls
        if prctl(_PR_SET_PDEATHSIG, kill, 0, 0, 0) != 0:
            return  # refused (a sandbox): run on, stopped by the parent's shutdown as before
        if os.getppid() != parent:
            os.kill(os.getpid(), kill)

    return preexec


def _spawning_thread() -> ThreadPoolExecutor:
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow-spawn")
        return _spawner


def spawn(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(args, **kwargs)`` for a child that dies with this process.

    Forks from the main thread, or else from one spawning thread that lives until the
    interpreter exits, so the child does not die with a short-lived thread that started it.
    """
    kwargs["preexec_fn"] = die_with_parent()
    if kwargs["preexec_fn"] is None or threading.current_thread() is threading.main_thread():
        return subprocess.Popen(args, **kwargs)
    return _spawning_thread().submit(lambda: subprocess.Popen(args, **kwargs)).result()
