"""``shadow replay``: replay captured traffic to a baseline and a candidate, open loop."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from shadow.config import ArmConfig, Config, load_config, override
from shadow.errors import UsageError
from shadow.replay.signals import stop_on_signals

if TYPE_CHECKING:
    from rich.console import Console

    from shadow.replay.budget import UnpricedModelsError
    from shadow.replay.jobs import ReplayJob, ReplayOutcome
    from shadow.replay.replayer import Replayer

__all__ = ["command", "unpriced_message"]


def _parse_ramp(value: str | None) -> tuple[float, float, float] | None:
    if value is None:
        return None
    try:
        start, end, seconds = (float(part) for part in value.split(":"))
    except ValueError:
        raise UsageError(
            f"--ramp has value {value!r}; use START_RATE:END_RATE:SECONDS, e.g. 10:500:60"
        ) from None
    return start, end, seconds


@click.command("replay")
@click.argument("source")
@click.option("--baseline", metavar="URL", help="Base URL of the baseline pipeline.")
@click.option("--candidate", metavar="URL", help="Base URL of the candidate pipeline.")
@click.option(
    "--speed", type=float, default=None, help="Replay at recorded gaps / SPEED.  [default: 1]"
)
@click.option("--rate", type=float, help="Load-test mode: ignore recorded times, send at RATE/s.")
@click.option(
    "--arrival",
    type=click.Choice(["constant", "poisson", "gamma"]),
    default="poisson",
    show_default=True,
    help="Arrival process for --rate.",
)
@click.option(
    "--burstiness",
    type=float,
    default=1.0,
    show_default=True,
    help="gamma arrivals: >1 burstier than Poisson, <1 smoother.",
)
@click.option("--ramp", metavar="START:END:SECONDS", help="Ramp the rate (load-test mode).")
@click.option(
    "--repeat-baseline",
    is_flag=True,
    default=None,
    help="Also send each request to the baseline twice (the noise floor).",
)
@click.option("--limit", type=click.IntRange(1), help="Replay at most N records.")
@click.option(
    "--from",
    "from_time",
    metavar="TIME",
    help="Only records captured at or after TIME (ISO 8601 or epoch seconds).",
)
@click.option(
    "--to",
    "to_time",
    metavar="TIME",
    help="Only records captured before TIME (ISO 8601 or epoch seconds).",
)
@click.option(
    "--out",
    default="run.duckdb",
    show_default=True,
    help="Results: a DuckDB file, or DIR/ for Parquet parts (scale-out).",
)
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--max-in-flight", type=click.IntRange(1), help="Bound on concurrent sends.")
@click.option("--timeout", "timeout_s", type=float, help="Per-request timeout, seconds.")
@click.option("--retries", type=click.IntRange(0), help="Retries per failed send (default 0).")
@click.option("--max-cost-usd", type=float, help="Stop when the priced cost reaches this.")
@click.option("--pricing", type=click.Path(exists=True, dir_okay=False), help="Pricing file.")
@click.option("--allow-unpriced", is_flag=True,
              help="With --max-cost-usd: start although a model has no price (the cap then "
              "covers priced attempts only).")  # fmt: skip
@click.option("--run-id", help="Name this run (default: a new id).")
@click.option("--resume", "resume_id", metavar="RUN_ID", help="Continue a stopped run.")
@click.option("--dry-run", is_flag=True, help="Print the schedule and send nothing.")
@click.option("--start-at", type=float, help="Epoch seconds to start at (several replayers).")
@click.option("--group-id", help="Kafka consumer group (several replayers share partitions).")
@click.option("--shard", metavar="I/N",
              help="Send only records I, I+N, I+2N... of the schedule (several processes, "
              "same --start-at, one global rate).")  # fmt: skip
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Split the run across N processes sharing its schedule (rates beyond one "
              "core; --out DIR/).")  # fmt: skip
@click.option(
    "--grace",
    "grace_s",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds in-flight sends get to finish after Ctrl-C.",
)
@click.option("--quiet", is_flag=True, help="No progress display.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (for scripts).")
@click.option("--dead-letter", type=click.Path(dir_okay=False), help="Where bad records go.")
def command(**opts: Any) -> None:
    """Replay captured requests to a baseline and a candidate pipeline, open loop, at the
    recorded rate (or faster, or at a synthetic rate), and store every measurement.

    SOURCE is a .jsonl or .parquet file of TraceRecords, or kafka://BOOTSTRAP/TOPIC (read from
    the beginning to its end: past the end offsets the broker reports, until every partition is
    quiet; the summary says what was read per partition, and an incomplete read exits 1).
    Each record is due at start + (t_i - t_0) / speed and goes to both arms at that moment; a
    slow target never delays later sends. Latency counts from the due time (no coordinated
    omission); schedule lag is recorded for every send.

    Captured credentials are never replayed: give each arm its own in [arms.NAME] of the
    config (api_key_env). Only inference routes are replayed (replay.allow).

    \b
    Examples:
      shadow replay traces.jsonl --baseline http://127.0.0.1:8001 --candidate http://127.0.0.1:8002
      shadow replay kafka://127.0.0.1:9092/shadow.traces --baseline URL --candidate URL \\
          --speed 4 --repeat-baseline --out run.duckdb
      shadow replay traces.jsonl --baseline URL --candidate URL --rate 200 --arrival gamma \\
          --burstiness 4 --limit 5000            # load test
      shadow replay traces.jsonl --baseline URL --candidate URL --dry-run
    """
    if opts["workers"] > 1 and not opts["dry_run"]:
        exit_code = _run_workers(opts)
    else:
        import uvloop

        exit_code = uvloop.run(_main(opts))
    if exit_code:
        sys.exit(exit_code)


def _arms(config: Config, opts: dict[str, Any]) -> dict[str, ArmConfig]:
    arms: dict[str, ArmConfig] = {}
    for name in ("baseline", "candidate"):
        arm = config.arms.get(name, ArmConfig())
        arm = override(arm, f"arms.{name}", url=opts[name], timeout_s=opts["timeout_s"])
        if not arm.url:
            raise UsageError(f"no {name} URL: pass --{name} URL (or set arms.{name}.url)")
        arms[name] = arm
    return arms


def _job(opts: dict[str, Any]) -> ReplayJob:
    """The replay the flags and the config ask for."""
    from shadow.replay.jobs import ReplayJob
    from shadow.replay.plan import Pacing
    from shadow.replay.pricing import pricing_for

    config = load_config(opts["config_path"])
    replay = override(
        config.replay,
        "replay",
        max_in_flight=opts["max_in_flight"],
        repeat_baseline=opts["repeat_baseline"],
        retries=opts["retries"],
    )
    safety = override(config.safety, "safety", max_cost_usd=opts["max_cost_usd"])
    arms = _arms(config, opts)
    from_time_ns = _time_ns("--from", opts["from_time"])
    to_time_ns = _time_ns("--to", opts["to_time"])
    pacing = Pacing(  # checked by the schedule, whose errors name the flag (shadow.cli.flags)
        speed=replay.speed if opts["speed"] is None else opts["speed"],
        rate=opts["rate"],
        arrival=opts["arrival"],
        burstiness=opts["burstiness"],
        ramp=_parse_ramp(opts["ramp"]),
    )
    return ReplayJob(
        source=opts["source"],
        out=opts["out"],
        arms=arms,
        pricing=pricing_for(config, opts["pricing"]),
        replay=replay,
        safety=safety,
        validators=config.validators,
        pacing=pacing,
        limit=opts["limit"],
        from_time_ns=from_time_ns,
        to_time_ns=to_time_ns,
        group_id=opts["group_id"],
        shard=_parse_shard(opts["shard"]) if opts["shard"] else None,
        run_id=opts["resume_id"] or opts["run_id"],
        resume=bool(opts["resume_id"]),
        start_at=opts["start_at"],
        grace_s=opts["grace_s"],
        dead_letter=opts["dead_letter"],
        run_config={k: v for k, v in opts.items() if k not in ("config_path", "workers")}
        | {"config_path": str(opts["config_path"] or "")},
        allow_unpriced=opts["allow_unpriced"],
    )


async def _main(opts: dict[str, Any]) -> int:
    from rich.console import Console

    from shadow.replay.jobs import run_replay

    job = _job(opts)
    console = Console(stderr=True)
    quiet = opts["quiet"] or opts["as_json"] or not console.is_terminal
    with _usage_errors():
        outcome = await run_replay(
            job, dry_run=opts["dry_run"], watch=_watcher(console, opts["grace_s"], quiet=quiet)
        )
    return _report(opts, outcome)


def _run_workers(opts: dict[str, Any]) -> int:
    """``--workers N``: N processes share the schedule; one merged summary."""
    from shadow.replay.workers import check_workers, run_workers

    job = _job(opts)
    check_workers(job, opts["workers"])
    with _usage_errors():
        outcome = run_workers(job, opts["workers"])
    return _report(opts, outcome)


@contextlib.contextmanager
def _usage_errors() -> Iterator[None]:
    """The run's refusals as one-line usage errors."""
    from shadow.replay.budget import UnpricedModelsError
    from shadow.replay.session import UnknownRunError

    try:
        yield
    except UnknownRunError as exc:
        raise UsageError(
            f"--resume {exc.run_id}: no results for that run in {exc.out}; "
            "check the run id (shadow replay lists it in its summary)"
        ) from None
    except UnpricedModelsError as exc:
        raise UsageError(unpriced_message(exc)) from None


def _report(opts: dict[str, Any], outcome: ReplayOutcome) -> int:
    """Print the outcome (the plan, the JSON summary or the table); the exit code."""
    from rich.console import Console

    from shadow.replay.display import read_lines, summary_table

    if outcome.dry_run is not None:
        for line in outcome.dry_run.lines():
            click.echo(line)
        return 0
    assert outcome.stats is not None
    if opts["as_json"]:
        click.echo(json.dumps(outcome.summary))
    else:
        Console().print(summary_table(outcome.stats))
        reads = outcome.summary.get("reads")
        if isinstance(reads, dict):
            click.echo("\n".join(read_lines(reads)))
        click.echo(
            f"results: {opts['out']} (run {outcome.run_id})"
            + (
                f"; {outcome.dead_letter_count} bad records in {outcome.dead_letter_path}"
                if outcome.dead_letter_count
                else ""
            )
        )
    if outcome.stats.budget_unenforceable:
        click.echo(outcome.stats.budget_unenforceable, err=True)
    return 1 if outcome.status in ("interrupted", "budget_exhausted") else 0


def unpriced_message(exc: UnpricedModelsError) -> str:
    """The one line ``shadow replay`` / ``shadow mirror`` print when a budget cannot be kept."""
    first = min(model for models in exc.unpriced.values() for model in models)
    return (
        f"--max-cost-usd cannot be enforced: {exc.describe()}; add a price for {exc.it()} "
        f'(a [pricing."{first}"] table in --config, or --pricing FILE), '
        "or pass --allow-unpriced to start anyway"
    )


def _watcher(
    console: Console, grace_s: float, *, quiet: bool
) -> Callable[[Replayer], AbstractAsyncContextManager[None]]:
    """Ctrl-C (or SIGTERM) handling and the live display around a replay."""
    from shadow.replay.display import live_progress

    @contextlib.asynccontextmanager
    async def watch(replayer: Replayer) -> AsyncIterator[None]:
        def say() -> None:
            console.print(
                "[yellow]stopping: no new sends; in-flight ones get "
                f"{grace_s:.0f} s (Ctrl-C again stops now)[/]"
            )

        with stop_on_signals(replayer, on_first=say):
            if quiet:
                yield
            else:
                async with live_progress(replayer.stats, console):
                    yield

    return watch


def _time_ns(flag: str, value: str | None) -> int | None:
    """Epoch nanoseconds from epoch seconds or an ISO 8601 time (UTC when no zone is given)."""
    if value is None:
        return None
    from datetime import UTC, datetime
    from decimal import Decimal, InvalidOperation

    try:
        return int(Decimal(value) * 1_000_000_000)  # exact: floats lose nanoseconds at 1.7e9 s
    except InvalidOperation:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{flag} has value {value!r}; use epoch seconds or ISO 8601 such as "
            "2023-11-16T18:20:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    whole = int(moment.replace(microsecond=0).timestamp())
    return whole * 1_000_000_000 + moment.microsecond * 1000


def _parse_shard(value: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in value.split("/"))
    except ValueError:
        index, count = -1, 0
    if not 0 <= index < count:
        raise UsageError(f"--shard has value {value!r}; use I/N with 0 <= I < N, e.g. 0/2")
    return index, count
