"""Children that die with their parent: a SIGKILLed parent leaves no orphan behind (Linux)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shadow.lifeline import die_with_parent, spawn

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only"
)

SLEEPER = ["sleep", "60"]


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie waiting to be reaped does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def wait_for(condition: Callable[[], bool], within_s: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``within_s`` pass; whether it held."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)  # polling an observable state, bounded above
    return True


def run_in_thread_until_gone(fn: Callable[[], None]) -> None:
    """Run ``fn`` on a thread and wait until the kernel has really ended that thread."""
    thread = threading.Thread(target=fn)
    thread.start()
    thread.join()
    native = thread.native_id
    assert native is not None
    assert wait_for(lambda: not Path(f"/proc/self/task/{native}").exists())


def test_a_child_of_a_sigkilled_parent_dies_with_it() -> None:
    """A process spawned through shadow.lifeline is gone soon after its parent is SIGKILLed."""
    parent_code = (
        "import sys; from shadow.lifeline import spawn\n"
        f"child = spawn({SLEEPER!r})\n"
        "print(child.pid, flush=True)\n"
        "sys.stdin.read()\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", parent_code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as parent:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert alive(child)
        parent.kill()
        parent.wait()
    assert wait_for(lambda: not alive(child)), f"child {child} outlived its parent"


def test_a_child_spawned_from_a_short_lived_thread_outlives_that_thread() -> None:
    """The kernel's parent is the forking thread; spawn() forks from one that stays."""
    spawned: list[subprocess.Popen[bytes]] = []
    run_in_thread_until_gone(lambda: spawned.append(spawn(SLEEPER)))
    (child,) = spawned
    try:
        assert child.poll() is None, "the child died with the thread that asked for it"
    finally:
        child.kill()
        child.wait()


def test_the_kernel_kills_a_child_when_the_thread_that_forked_it_exits() -> None:
    """Why spawn() needs its own thread: a plain fork from a worker thread dies with it."""
    spawned: list[subprocess.Popen[bytes]] = []
    preexec = die_with_parent()
    assert preexec is not None
    run_in_thread_until_gone(lambda: spawned.append(subprocess.Popen(SLEEPER, preexec_fn=preexec)))
    (child,) = spawned
    try:
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -9
