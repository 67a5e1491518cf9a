"""The child processes (and worker threads) of ``shadow demo``: started, watched, stopped.

The servers and the replayer run as the real commands (``python -m shadow broker``,
``mock-llm``, ``capture``, ``replay``), each in its own session, so a Ctrl-C in the terminal
reaches only the demo, which then stops them all: SIGTERM, a deadline, SIGKILL as the last
resort (also for the grandchildren a child started, such as the broker's Tansu process).
If the demo itself is killed (SIGKILL, no chance to stop anything), its children die with it:
each asks the kernel for that at start (Linux, :func:`shadow.lifeline.die_with_parent`; the
demo's event loop runs in the main thread, which forks them), and the broker's Tansu process
dies with the broker the same way.
A child's stderr, and its stdout once its ready line has been read, go to
``DIR/logs/NAME.log`` after the command line itself; ``DIR/logs/pids.txt`` lists every process
the demo started, so nothing can outlive it unnoticed.

Readiness is observed, never assumed: a server is ready when it has printed its address and its
health endpoint answers 200, each within a deadline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import re
import shlex
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx

from shadow.errors import ShadowError
from shadow.lifeline import die_with_parent

__all__ = ["Child", "Children", "DemoError", "busy_workers", "in_thread", "together"]

T = TypeVar("T")

_STOP_TIMEOUT_S = 10.0
_POLL_S = 0.05
_WORKER = "shadow-demo-worker"


class DemoError(ShadowError):
    """A step of ``shadow demo`` failed operationally (exit 1); the message names the log."""


def _env() -> dict[str, str]:
    # Unbuffered, so a child's ready line arrives when it is printed, not when a buffer fills.
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def _argv(args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "shadow", *args]


class Child:
    """One ``python -m shadow ...`` server process of the demo."""

    def __init__(self, name: str, args: Sequence[str], *, logs: Path, title: str = "") -> None:
        self.name = name
        self.title = title or name
        """How messages name it: ``capture sidecar``."""
        self.args = list(args)
        self.log_path = logs / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.descendants: list[tuple[int, bytes]] = []
        """Processes the child started itself (pid, cmdline), killed if the child is killed."""
        self._log: IO[bytes] | None = None
        self._drain: asyncio.Task[None] | None = None
        self.stopping = False

    @property
    def pid(self) -> int | None:
        """The child's process id once started."""
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.proc is not None and self.proc.returncode is None

    def exited(self, what: str = "exited") -> DemoError:
        """The error for a child that stopped on its own, pointing at its log."""
        code = self.proc.returncode if self.proc is not None else None
        return DemoError(f"the {self.title} {what}{_status(code)}: see {self.log_path}")

    async def start(self, ready: re.Pattern[str], *, within_s: float) -> re.Match[str]:
        """Start the process and return the match of ``ready`` on its first matching stdout line."""
        self._log = self.log_path.open("ab")  # append: the child writes its stderr here too
        self._log.write(_command_line(self.args))
        self._log.flush()
        self.proc = await asyncio.create_subprocess_exec(
            *_argv(self.args),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._log,
            env=_env(),
            start_new_session=True,  # Ctrl-C reaches the demo only; it stops the children
            preexec_fn=die_with_parent(),  # and a killed demo takes them with it
        )
        _note_pids(self.log_path.parent, [(self.proc.pid, self.name)])
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(within_s):
                while True:
                    line = await self.proc.stdout.readline()
                    if not line:
                        await self.proc.wait()
                        raise self.exited("exited at start")
                    self._log.write(line)
                    self._log.flush()
                    match = ready.search(line.decode("utf-8", "replace"))
                    if match:
                        break
        except TimeoutError:
            raise DemoError(
                f"the {self.title} did not start within {within_s:.0f} s: see {self.log_path}"
            ) from None
        self._drain = asyncio.create_task(self._copy_stdout(), name=f"drain:{self.name}")
        return match

    async def _copy_stdout(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        assert self._log is not None
        while line := await self.proc.stdout.readline():
            self._log.write(line)
            self._log.flush()

    async def wait_healthy(self, url: str, *, within_s: float) -> None:
        """Poll ``url`` until it answers 200, the process exits, or ``within_s`` pass."""
        deadline = time.monotonic() + within_s
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
            while True:
                if not self.running:
                    raise self.exited("exited at start")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url)).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise DemoError(
                        f"the {self.title} did not answer {url} within {within_s:.0f} s: "
                        f"see {self.log_path}"
                    )
                await asyncio.sleep(_POLL_S)  # polling an observable state, bounded above
        self.note_descendants()

    def note_descendants(self) -> None:
        """Find the processes the child started (listed in pids.txt, killed with it)."""
        if self.pid is not None:
            self.descendants = _descendants(self.pid)
            named = [(pid, f"{self.name}/child") for pid, _ in self.descendants]
            _note_pids(self.log_path.parent, named)

    async def wait(self) -> int:
        """Wait until the process exits on its own; its exit code."""
        assert self.proc is not None
        return await self.proc.wait()

    async def stop(self, grace_s: float = _STOP_TIMEOUT_S) -> None:
        """SIGTERM, wait up to ``grace_s``, then SIGKILL it and its descendants; safe twice."""
        self.stopping = True
        if self.proc is not None:
            await _terminate(self.proc, grace_s, kill=self.kill)
        _kill_survivors(self.descendants)
        if self._drain is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._drain, 2.0)
            self._drain = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL the process and the descendants it started (the last resort)."""
        self.stopping = True
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        _kill_survivors(self.descendants)


class Children:
    """Every process the demo starts: its servers and the commands it runs to completion."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self._children: list[Child] = []
        self._running: set[asyncio.subprocess.Process] = set()

    def add(self, name: str, args: Sequence[str], *, title: str = "") -> Child:
        """A child to start; ``name`` names its log, ``title`` it in messages."""
        child = Child(name, args, logs=self.logs, title=title)
        self._children.append(child)
        return child

    async def watch(self, *names: str) -> None:
        """Return never; raise :class:`DemoError` as soon as one of ``names`` exits unasked."""
        children = [c for c in self._children if c.name in names and c.proc is not None]
        if not children:
            await asyncio.Event().wait()
        waits = {asyncio.ensure_future(c.wait()): c for c in children}
        try:
            while True:
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    child = waits.pop(future)
                    if not child.stopping:
                        raise child.exited()
                if not waits:
                    await asyncio.Event().wait()
        finally:
            for future in waits:
                future.cancel()

    async def stop_all(self, grace_s: float = _STOP_TIMEOUT_S) -> None:
        """SIGTERM every child at once, wait up to ``grace_s``, SIGKILL what is left."""
        await asyncio.gather(*(c.stop(grace_s) for c in self._children))

    def kill_all(self) -> None:
        """A second Ctrl-C: SIGKILL everything at once."""
        for child in self._children:
            child.kill()
        for proc in self._running:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    async def run_to_end(self, name: str, args: Sequence[str]) -> tuple[int, str]:
        """Run ``python -m shadow ARGS`` to completion: (exit code, stdout); stderr to its log.

        Cancelled (Ctrl-C), it stops the process (SIGTERM, then SIGKILL) before re-raising.
        """
        with (self.logs / f"{name}.log").open("ab") as log:
            log.write(_command_line(args))
            log.flush()
            proc = await asyncio.create_subprocess_exec(
                *_argv(args),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=_env(),
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
            _note_pids(self.logs, [(proc.pid, name)])
            self._running.add(proc)
            try:
                stdout, _ = await proc.communicate()
            except asyncio.CancelledError:
                await asyncio.shield(_terminate(proc))
                raise
            finally:
                self._running.discard(proc)
        return await proc.wait(), stdout.decode("utf-8", "replace")


async def _terminate(
    proc: asyncio.subprocess.Process,
    grace_s: float = _STOP_TIMEOUT_S,
    *,
    kill: Callable[[], None] | None = None,
) -> None:
    """SIGTERM ``proc``, wait up to ``grace_s``, then ``kill()`` (default: SIGKILL it)."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(grace_s):
            await proc.wait()
    except TimeoutError:
        if kill is not None:
            kill()
        else:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await proc.wait()


def _status(code: int | None) -> str:
    if code is None:
        return ""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f" (killed by {signal.Signals(-code).name})"
    return f" with exit code {code}"


def _command_line(args: Sequence[str]) -> bytes:
    """The command as a person would type it, the first line of its log."""
    return ("$ " + shlex.join(["shadow", *args]) + "\n").encode()


def _note_pids(logs: Path, processes: Sequence[tuple[int, str]]) -> None:
    """Append ``PID NAME`` lines to ``DIR/logs/pids.txt``, the list of everything started."""
    with (logs / "pids.txt").open("a") as pids:
        pids.write("".join(f"{pid} {name}\n" for pid, name in processes))


def _descendants(pid: int) -> list[tuple[int, bytes]]:
    """Every live process below ``pid`` as (pid, cmdline), read from /proc (Linux; else [])."""
    parents: dict[int, list[int]] = {}
    try:
        entries = [int(e) for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return []
    for entry in entries:
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        # Field 4 is the parent pid; the command name before it may hold spaces, so split
        # after its closing parenthesis.
        parent = int(stat[stat.rindex(b")") + 2 :].split()[1])
        parents.setdefault(parent, []).append(entry)
    found: list[tuple[int, bytes]] = []
    todo = list(parents.get(pid, []))
    while todo:
        child = todo.pop()
        found.append((child, _cmdline(child)))
        todo += parents.get(child, [])
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _kill_survivors(processes: Sequence[tuple[int, bytes]]) -> None:
    """SIGKILL the processes that are still alive and still the same program (no pid reuse)."""
    for pid, cmdline in processes:
        if cmdline and _cmdline(pid) == cmdline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


async def together(*work: Awaitable[Any]) -> list[Any]:
    """Run ``work`` concurrently; the first failure cancels the rest and is raised as is."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_awaited(w)) for w in work]
    except BaseExceptionGroup as errors:
        raise errors.exceptions[0] from None
    return [t.result() for t in tasks]


async def _awaited(work: Awaitable[T]) -> T:
    return await work


async def in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` on a daemon worker thread: a Ctrl-C need not wait for it to finish."""
    done: concurrent.futures.Future[T] = concurrent.futures.Future()

    def target() -> None:
        if not done.set_running_or_notify_cancel():
            return
        try:
            done.set_result(fn())
        except BaseException as exc:
            done.set_exception(exc)

    threading.Thread(target=target, name=_WORKER, daemon=True).start()
    return await asyncio.wrap_future(done)


def busy_workers() -> bool:
    """Whether a worker thread (embeddings, DuckDB) still runs, e.g. after a Ctrl-C."""
    return any(t.name == _WORKER and t.is_alive() for t in threading.enumerate())
