"""A replay or a live mirror, end to end: a job's settings in, its outcome out.

What ``shadow replay`` and ``shadow mirror`` run once they have turned flags and config into
a :class:`ReplayJob` or a :class:`MirrorJob`. Each job runs inside a
:class:`~shadow.replay.session.RunSession`, so its status is written however it ends. The
caller watches the run through ``watch``: an async context manager factory entered around the
run with the :class:`~shadow.replay.replayer.Replayer` (or
:class:`~shadow.replay.mirror.Mirror`), where the CLI installs its signal handlers and the live
display and calls ``request_stop`` / ``force_stop``.

Both build their requests through :class:`~shadow.replay.targets.HttpTarget` with the same
route allow-list and header pass-through (``replay.allow``, ``replay.pass_headers``), and
their :class:`~shadow.replay.scheduler.FanOut` counts and records what the allow-list refuses.

A budget (``safety.max_cost_usd``) must be enforceable: unless ``allow_unpriced``, a job whose
arms will use a model with no price is refused before anything is sent or recorded
(:func:`~shadow.replay.budget.check_priced`), and one met during the run stops it as
``budget_exhausted`` (:mod:`shadow.replay.budget`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from shadow.config import ArmConfig, ReplayConfig, SafetyConfig, ValidatorsConfig
from shadow.errors import UsageError
from shadow.kafka.address import KafkaAddress
from shadow.kafka.retry import wait_for_kafka
from shadow.replay.arms import replay_arms, replay_targets
from shadow.replay.breaker import CircuitBreaker
from shadow.replay.budget import check_priced, model_override, planned_models, request_model
from shadow.replay.mirror import MIRROR_STATS_WINDOW, Mirror
from shadow.replay.pacing import start_at_epoch
from shadow.replay.plan import DryRun, Pacing, ReplayPlan
from shadow.replay.pricing import PricingTable
from shadow.replay.replayer import Replayer
from shadow.replay.scheduler import FanOut
from shadow.replay.session import RunSession, RunStatus, new_mirror_run_id, new_run_id
from shadow.replay.sources import load_sorted, read_summary
from shadow.replay.stats import ReplayStats
from shadow.replay.targets import HttpTarget
from shadow.replay.validators import Validators
from shadow.trace.record import TraceRecord

__all__ = ["MirrorJob", "MirrorOutcome", "ReplayJob", "ReplayOutcome", "run_mirror", "run_replay"]

ReplayWatch = Callable[[Replayer], AbstractAsyncContextManager[object]]
MirrorWatch = Callable[[Mirror], AbstractAsyncContextManager[object]]


@dataclass(frozen=True, kw_only=True)
class ReplayJob:
    """Everything one replay needs, resolved from flags and config.

    Args:
        source: a trace file or ``kafka://BOOTSTRAP/TOPIC`` (read up to its current end).
        out: the results store (a DuckDB file, or ``DIR/`` for Parquet parts).
        arms: the ``baseline`` and ``candidate`` arms.
        pacing: when records are due (its ``speed`` wins over ``replay.speed``).
        shard: ``(index, count)``: send only every ``count``-th record from ``index``.
        run_id: the run's id (default: a new one); with ``resume``, the run to continue.
        start_at: epoch seconds to start at (several replayers at once); None: now.
        run_config: what the store records as the run's configuration.
        allow_unpriced: with a budget, start (and go on) although a model has no price.
    """

    source: str
    out: str
    arms: Mapping[str, ArmConfig]
    pricing: PricingTable
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    validators: ValidatorsConfig = field(default_factory=ValidatorsConfig)
    pacing: Pacing = field(default_factory=Pacing)
    limit: int | None = None
    from_time_ns: int | None = None
    to_time_ns: int | None = None
    group_id: str | None = None
    shard: tuple[int, int] | None = None
    run_id: str | None = None
    resume: bool = False
    start_at: float | None = None
    grace_s: float = 30.0
    dead_letter: str | None = None
    run_config: Mapping[str, Any] = field(default_factory=dict)
    allow_unpriced: bool = False

    def __post_init__(self) -> None:
        if self.resume and not self.run_id:
            raise ValueError("a resumed replay needs the run_id of the run it continues")
        missing = {"baseline", "candidate"} - set(self.arms)
        if missing:
            raise ValueError(f"arms lacks {', '.join(sorted(missing))}")


@dataclass(frozen=True, kw_only=True)
class ReplayOutcome:
    """How a replay went: its status and summary, or the dry run's plan."""

    run_id: str
    dead_letter_count: int
    dead_letter_path: str
    stats: ReplayStats | None = None
    """None for a dry run."""
    status: RunStatus | None = None
    summary: dict[str, object] = field(default_factory=dict)
    """The run's counts plus ``out`` and ``dead_letter`` (the JSON summary)."""
    dry_run: DryRun | None = None


async def run_replay(
    job: ReplayJob, *, dry_run: bool = False, watch: ReplayWatch | None = None
) -> ReplayOutcome:
    """Load, plan and replay ``job``; with ``dry_run`` return the plan and send nothing.

    Raises:
        UsageError: the source holds no valid records (and whatever opening it raises).
        UnknownRunError: ``job.resume`` names a run with no results in ``job.out``.
    """
    replay = job.replay
    routes = replay.routes()
    session = RunSession(
        job.source,
        out=job.out,
        dead_letter=job.dead_letter,
        group_id=job.group_id,
        limit=job.limit,
        from_time_ns=job.from_time_ns,
        to_time_ns=job.to_time_ns,
        batch_rows=replay.batch_rows,
        writer_process=True,
    )
    async with session:
        items = await load_sorted(session.source, limit=job.limit)
        if not items:
            raise UsageError(f"{job.source} holds no valid records to replay")
        arms = replay_arms(repeat_baseline=replay.repeat_baseline)
        plan = ReplayPlan.build(items, pacing=job.pacing, arms=arms)
        if job.shard is not None:
            plan = plan.shard(*job.shard)
        run_id = job.run_id or new_run_id()
        if dry_run:
            return ReplayOutcome(
                run_id=run_id,
                dead_letter_count=session.dead_letter.count,
                dead_letter_path=str(session.dead_letter.path),
                dry_run=plan.dry_run(routes, replay.pass_headers, job.arms),
            )
        validators = Validators(job.validators)
        loop = asyncio.get_running_loop()
        start = start_at_epoch(job.start_at, loop=loop) if job.start_at else None
        arm_configs = {
            name: job.arms["baseline" if name == "baseline_repeat" else name] for name in arms
        }
        if job.safety.max_cost_usd is not None and not job.allow_unpriced:
            records = (
                item.record
                for item in plan.items
                if routes.check(
                    item.record.request.method,
                    item.record.request.path,
                    body_whole=not item.record.request.body_truncated,
                ).allowed
            )
            check_priced(job.pricing, planned_models(records, arm_configs))
        targets = replay_targets(
            job.arms,
            repeat_baseline=replay.repeat_baseline,
            routes=routes,
            pass_headers=replay.pass_headers,
        )
        done = session.begin(
            run_id, arms=arms, config=job.run_config, targets=targets, resume=job.resume
        )
        plan = plan.resume(done)
        fanout = FanOut(
            run_id=run_id,
            targets=session.targets,
            writer=session.writer,
            pricing=job.pricing,
            validators=validators,
            breakers={name: CircuitBreaker.from_config(job.safety) for name in session.targets},
            routes=routes,
            max_in_flight=replay.max_in_flight,
            max_cost_usd=job.safety.max_cost_usd,
            allow_unpriced=job.allow_unpriced,
            model_of=_model_of(arm_configs),
            retries=replay.retries,
            source=session.source,
            grace_s=job.grace_s,
        )
        replayer = Replayer(
            fanout, items=plan.items, offsets=list(plan.offsets), done=done, start=start
        )
        session.track(replayer.stats)
        async with watch(replayer) if watch else contextlib.nullcontext():
            await replayer.run()
    return ReplayOutcome(
        run_id=run_id,
        dead_letter_count=session.dead_letter.count,
        dead_letter_path=str(session.dead_letter.path),
        stats=replayer.stats,
        status=session.status,
        summary=session.summary
        | {"out": job.out, "dead_letter": session.dead_letter.count}
        | read_summary(session.source),
    )


@dataclass(frozen=True, kw_only=True)
class MirrorJob:
    """Everything one live mirror needs, resolved from flags and config.

    Args:
        source: ``kafka://BOOTSTRAP/TOPIC``, followed until the mirror is stopped.
        candidate: the arm every new record goes to.
        group_id: the Kafka consumer group (several mirrors split the partitions).
        dead_letter: where records that fail validation go (default: ``<out>.dead.jsonl``).
        wait_for_kafka: at start, retry until Kafka answers (:mod:`shadow.kafka.retry`)
            instead of failing when it does not.
        allow_unpriced: with a budget, start (and go on) although a model has no price.
    """

    source: str
    out: str
    candidate: ArmConfig
    pricing: PricingTable
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    validators: ValidatorsConfig = field(default_factory=ValidatorsConfig)
    group_id: str | None = "shadow-mirror"
    run_id: str | None = None
    grace_s: float = 30.0
    dead_letter: str | None = None
    wait_for_kafka: bool = True
    allow_unpriced: bool = False


@dataclass(frozen=True, kw_only=True)
class MirrorOutcome:
    """How a mirror went."""

    run_id: str
    stats: ReplayStats
    status: RunStatus | None
    dead_letter_count: int
    dead_letter_path: str
    summary: dict[str, object]
    """The run's counts, as written to the store, plus ``out``, ``dead_letter`` (how many
    records went to the dead-letter file) and ``dead_letter_path`` (the JSON summary)."""


async def run_mirror(job: MirrorJob, *, watch: MirrorWatch | None = None) -> MirrorOutcome:
    """Mirror ``job.source`` to the candidate until stopped (through ``watch``).

    With a budget, the candidate's ``model`` override must be priced before it starts; the
    model of each live record is checked as it arrives (see the module docstring).
    """
    override = model_override(job.candidate)
    if job.safety.max_cost_usd is not None and not job.allow_unpriced and override:
        check_priced(job.pricing, {"candidate": {override: 1}})
    run_id = job.run_id or new_mirror_run_id()
    replay = job.replay
    routes = replay.routes()
    session = RunSession(
        job.source,
        out=job.out,
        dead_letter=job.dead_letter,
        group_id=job.group_id,
        follow=True,
        batch_rows=job.replay.batch_rows,
        flush_interval_s=1.0,
        writer_process=True,
    )
    validators = Validators(job.validators)
    async with session:
        session.begin(
            run_id,
            arms=["production", "candidate"],
            config={"candidate": job.candidate.url},
            targets={
                "candidate": HttpTarget(
                    "candidate", job.candidate, routes=routes, pass_headers=replay.pass_headers
                )
            },
        )
        mirror = Mirror(
            FanOut(
                run_id=run_id,
                targets=session.targets,
                writer=session.writer,
                pricing=job.pricing,
                validators=validators,
                breakers={"candidate": CircuitBreaker.from_config(job.safety)},
                routes=routes,
                max_in_flight=job.replay.max_in_flight,
                max_cost_usd=job.safety.max_cost_usd,
                allow_unpriced=job.allow_unpriced,
                model_of=_model_of({"candidate": job.candidate}),
                source=session.source,
                grace_s=job.grace_s,
                stats_window=MIRROR_STATS_WINDOW,
            ),
            ready=_kafka_ready(job.source) if job.wait_for_kafka else None,
            dead_letter=session.dead_letter,
        )
        session.track(mirror.stats, live=True)
        async with watch(mirror) if watch else contextlib.nullcontext():
            await mirror.run()
    dead_letter = session.dead_letter
    return MirrorOutcome(
        run_id=run_id,
        stats=mirror.stats,
        status=session.status,
        dead_letter_count=dead_letter.count,
        dead_letter_path=str(dead_letter.path),
        summary=session.summary
        | {
            "out": job.out,
            "dead_letter": dead_letter.count,
            "dead_letter_path": str(dead_letter.path),
        },
    )


def _kafka_ready(source: str) -> Callable[[], Awaitable[int]] | None:
    """For a ``kafka://`` source, a wait until its bootstrap servers answer (else None)."""
    if not KafkaAddress.is_address(source):
        return None
    return functools.partial(wait_for_kafka, KafkaAddress.parse(source))


def _model_of(arms: Mapping[str, ArmConfig]) -> Callable[[TraceRecord, str], str | None]:
    """What a FanOut asks before a budgeted send: the model the arm's request will name."""

    def model_of(record: TraceRecord, arm: str) -> str | None:
        config = arms.get(arm)
        return None if config is None else request_model(record, config)

    return model_of
