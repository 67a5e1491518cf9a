"""One replay split across processes that share its schedule (``shadow replay --workers N``).

For rates beyond one core. The parent plans nothing itself: it gives each of ``N`` worker
processes the same :class:`~shadow.replay.jobs.ReplayJob` with one start time
(``start_at``), one run id and its shard ``i/N`` (records ``i, i+N, i+2N ...`` of the one
schedule, :meth:`~shadow.replay.plan.ReplayPlan.shard`), so together they send every record
once per arm at its time, as ``--start-at T --shard I/N`` processes started by hand would.
Each writes its own Parquet parts into the one results directory (docs/architecture.md,
"Scale-out"); the parent merges the workers' figures into one summary: counts summed,
lag and latency percentiles over every worker's sends (the same figures as the stored rows).

A budget (``safety.max_cost_usd``) is split evenly between the workers, so together they never
spend more than it. ``max_in_flight`` bounds each worker. Only a file source can be split
(a Kafka read is split by a consumer group, ``--group-id``), and only into a Parquet
directory (``DIR/``). Ctrl-C reaches every worker (one process group): each stops as one
replay does; SIGTERM to the parent is passed on to them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import AsyncIterator, Sequence
from multiprocessing.connection import Connection
from types import FrameType
from typing import Any

from shadow.errors import UsageError
from shadow.kafka.address import KafkaAddress
from shadow.replay.jobs import ReplayJob, ReplayOutcome, run_replay
from shadow.replay.replayer import Replayer
from shadow.replay.session import RunStatus, new_run_id
from shadow.replay.signals import stop_on_signals
from shadow.replay.stats import ReplayStats

__all__ = ["STARTUP_S", "check_workers", "merge_stats", "run_workers"]

STARTUP_S = 3.0
"""Seconds between starting the workers and their common start, when no ``start_at`` is given
(a worker imports, loads and plans the whole source before it)."""

_SEVERITY: tuple[RunStatus, ...] = ("failed", "interrupted", "budget_exhausted")


def check_workers(job: ReplayJob, workers: int) -> None:
    """Refuse a split that could not keep every record once per arm (one-line UsageErrors)."""
    if workers < 1:
        raise UsageError(f"workers has value {workers}; it must be >= 1", setting="workers")
    if workers == 1:
        return
    if job.shard is not None:
        raise UsageError(
            "workers and shard both split the schedule; give one of them", setting="workers"
        )
    if KafkaAddress.is_address(job.source):
        raise UsageError(
            "workers splits a file source; split a Kafka read with a consumer group (group_id)",
            setting="workers",
        )
    if not job.out.endswith(("/", os.sep)):
        raise UsageError(
            f"workers writes Parquet parts into one directory; out has value {job.out!r}, "
            "give a directory ending in '/'",
            setting="workers",
        )


def run_workers(job: ReplayJob, workers: int, *, startup_s: float = STARTUP_S) -> ReplayOutcome:
    """Run ``job`` as ``workers`` processes sharing one schedule; one merged outcome.

    Raises the first worker's exception (re-raised here) if a worker fails.
    """
    check_workers(job, workers)
    run_id = job.run_id or new_run_id()
    start_at = job.start_at or time.time() + startup_s
    safety = job.safety
    if safety.max_cost_usd is not None:
        safety = dataclasses.replace(safety, max_cost_usd=safety.max_cost_usd / workers)
    jobs = [
        dataclasses.replace(
            job,
            shard=(index, workers),
            run_id=run_id,
            start_at=start_at,
            safety=safety,
            # Every worker loads the whole source: one of them writes its bad records.
            dead_letter=job.dead_letter if index == 0 else os.devnull,
        )
        for index in range(workers)
    ]
    context = multiprocessing.get_context("spawn")
    pipes: list[Connection] = []
    procs: list[multiprocessing.process.BaseProcess] = []
    for index, worker_job in enumerate(jobs):
        receive, send = context.Pipe(duplex=False)
        proc: multiprocessing.process.BaseProcess = context.Process(
            target=_worker, args=(worker_job, send), name=f"shadow-replay-worker-{index}"
        )
        proc.start()
        send.close()
        pipes.append(receive)
        procs.append(proc)
    with _forward_signals(procs):
        replies = [_reply(pipe, proc) for pipe, proc in zip(pipes, procs, strict=True)]
        for proc in procs:
            proc.join()
    errors = [reply for reply in replies if isinstance(reply, BaseException)]
    if errors:
        raise errors[0]
    outcomes = [reply for reply in replies if isinstance(reply, ReplayOutcome)]
    stats = merge_stats([o.stats for o in outcomes if o.stats is not None], run_id=run_id)
    statuses = {o.status for o in outcomes}
    status: RunStatus = next((s for s in _SEVERITY if s in statuses), "done")
    first = outcomes[0]
    return ReplayOutcome(
        run_id=run_id,
        dead_letter_count=first.dead_letter_count,
        dead_letter_path=first.dead_letter_path,
        stats=stats,
        status=status,
        summary=stats.as_dict()
        | {"out": job.out, "dead_letter": first.dead_letter_count, "workers": workers},
    )


def merge_stats(parts: Sequence[ReplayStats], *, run_id: str) -> ReplayStats:
    """One run's figures from its workers': counts summed, every lag and latency kept."""
    merged = ReplayStats(run_id=run_id, total=sum(p.total for p in parts))
    for part in parts:
        for name in (
            "scheduled", "late", "skipped_path", "skipped_method", "skipped_path_escape",
            "skipped_body", "skipped_untranslatable", "skipped_done",
        ):  # fmt: skip
            setattr(merged, name, getattr(merged, name) + getattr(part, name))
        _add_counts(merged.untranslatable, part.untranslatable)
        _add_counts(merged.unpriced_models, part.unpriced_models)
        merged.stopped_early |= part.stopped_early
        merged.budget_exhausted |= part.budget_exhausted
        merged.budget_unenforceable = merged.budget_unenforceable or part.budget_unenforceable
        merged.lags_ms.extend(part.lags_ms)
        for name, arm in part.arms.items():
            into = merged.arm(name)
            into.sent += arm.sent
            into.ok += arm.ok
            into.skipped += arm.skipped
            into.cost_usd += arm.cost_usd
            into.unpriced += arm.unpriced
            _add_counts(into.errors, arm.errors)
            into.latencies_ms.extend(arm.latencies_ms)
    if parts:  # CLOCK_MONOTONIC is one clock for every process of the host
        merged.started = min(p.started for p in parts)
        merged.ended = max(p.ended or time.monotonic() for p in parts)
    return merged


def _add_counts(into: dict[str, int], counts: dict[str, int]) -> None:
    for key, count in counts.items():
        into[key] = into.get(key, 0) + count


def _reply(pipe: Connection, proc: multiprocessing.process.BaseProcess) -> object:
    """What a worker sent back: its outcome or its exception (one for a worker that died)."""
    try:
        return pipe.recv()
    except EOFError:
        proc.join()
        return RuntimeError(f"{proc.name} exited with code {proc.exitcode} before it reported")
    finally:
        pipe.close()


@contextlib.contextmanager
def _forward_signals(procs: Sequence[multiprocessing.process.BaseProcess]) -> Any:
    """While the workers run: SIGTERM is passed on to them; Ctrl-C (which the terminal sends
    to every worker too) does not interrupt the parent, which waits for their outcomes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def forward(signum: int, _frame: FrameType | None) -> None:
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM,)}
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _worker(job: ReplayJob, reply: Connection) -> None:
    """One worker process: run its shard and send back the outcome (or the exception)."""
    import uvloop

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        result: object = uvloop.run(run_replay(job, watch=_stop_on_signal))
    except BaseException as exc:  # reported to the parent, which raises it
        result = _picklable(exc)
    reply.send(result)
    reply.close()


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))  # noqa: S301 (our own bytes, just made)
    except Exception:  # an exception type that does not survive a pipe
        message = str(exc)
        if isinstance(exc, UsageError):
            return UsageError(message)
        return RuntimeError(f"{type(exc).__name__}: {message}")
    return exc


@contextlib.asynccontextmanager
async def _stop_on_signal(replayer: Replayer) -> AsyncIterator[None]:
    """A worker's Ctrl-C / SIGTERM: the first stops scheduling, the second stops now."""
    with stop_on_signals(replayer):
        yield
