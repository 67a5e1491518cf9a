"""``shadow replay``: replay captured traffic to a baseline and a candidate, open loop."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from shadow.config import ArmConfig, Config, load_config, override
from shadow.errors import UsageError

__all__ = ["command"]


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
@click.option("--run-id", help="Name this run (default: a new id).")
@click.option("--resume", "resume_id", metavar="RUN_ID", help="Continue a stopped run.")
@click.option("--dry-run", is_flag=True, help="Print the schedule and send nothing.")
@click.option("--start-at", type=float, help="Epoch seconds to start at (several replayers).")
@click.option("--group-id", help="Kafka consumer group (several replayers share partitions).")
@click.option("--shard", metavar="I/N",
              help="Send only records I, I+N, I+2N... of the schedule (several processes, "
              "same --start-at, one global rate).")  # fmt: skip
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
    the beginning up to the current end). Each record is due at start + (t_i - t_0) / speed and
    goes to both arms at that moment; a slow target never delays later sends. Latency counts
    from the due time (no coordinated omission); schedule lag is recorded for every send.

    Captured credentials are never replayed: give each arm its own in [arms.NAME] of the
    config (api_key_env). Only inference paths are replayed (replay.allowed_paths).

    \b
    Examples:
      shadow replay traces.jsonl --baseline http://127.0.0.1:8001 --candidate http://127.0.0.1:8002
      shadow replay kafka://127.0.0.1:9092/shadow.traces --baseline URL --candidate URL \\
          --speed 4 --repeat-baseline --out run.duckdb
      shadow replay traces.jsonl --baseline URL --candidate URL --rate 200 --arrival gamma \\
          --burstiness 4 --limit 5000            # load test
      shadow replay traces.jsonl --baseline URL --candidate URL --dry-run
    """
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


async def _main(opts: dict[str, Any]) -> int:
    from rich.console import Console

    from shadow.replay.breaker import CircuitBreaker
    from shadow.replay.display import live_progress, summary_table
    from shadow.replay.pacing import recorded_schedule, start_at_epoch, synthetic_schedule
    from shadow.replay.pricing import pricing_for
    from shadow.replay.replayer import Replayer
    from shadow.replay.sources import load_sorted, open_source
    from shadow.replay.targets import HttpTarget, Target
    from shadow.replay.validators import Validators
    from shadow.results.store import open_results
    from shadow.results.writer import AsyncResultsWriter
    from shadow.trace.deadletter import DeadLetterFile

    config = load_config(opts["config_path"])
    replay = override(
        config.replay,
        "replay",
        speed=opts["speed"],
        max_in_flight=opts["max_in_flight"],
        repeat_baseline=opts["repeat_baseline"],
        retries=opts["retries"],
    )
    safety = override(config.safety, "safety", max_cost_usd=opts["max_cost_usd"])
    arms = _arms(config, opts)
    console = Console(stderr=True)
    quiet = opts["quiet"] or opts["as_json"] or not console.is_terminal

    dead_letter = DeadLetterFile(opts["dead_letter"] or f"{opts['out'].rstrip('/')}.dead.jsonl")
    source = open_source(
        opts["source"],
        dead_letter=dead_letter,
        group_id=opts["group_id"],
        limit=opts["limit"],
        from_time_ns=_time_ns("--from", opts["from_time"]),
        to_time_ns=_time_ns("--to", opts["to_time"]),
    )
    try:
        items = await load_sorted(source, limit=opts["limit"])
        if not items:
            raise UsageError(f"{opts['source']} holds no valid records to replay")
        if opts["rate"] is not None or opts["ramp"] is not None:
            offsets = synthetic_schedule(
                len(items),
                rate=opts["rate"] or 1.0,
                arrival=opts["arrival"],
                burstiness=opts["burstiness"],
                ramp=_parse_ramp(opts["ramp"]),
            )
        else:
            offsets = recorded_schedule([i.record.captured_at for i in items], speed=replay.speed)

        if opts["shard"]:
            index, count = _parse_shard(opts["shard"])
            items, offsets = items[index::count], offsets[index::count]
        run_id = opts["resume_id"] or opts["run_id"] or _new_run_id()
        arm_names = ["baseline", "candidate"] + (
            ["baseline_repeat"] if replay.repeat_baseline else []
        )
        if opts["dry_run"]:
            _print_dry_run(items, offsets, arm_names, replay.allowed_paths)
            return 0

        store = open_results(opts["out"])
        done: set[tuple[str, str]] = set()
        if opts["resume_id"]:
            done = store.done_keys(run_id)
            if not done:
                raise UsageError(
                    f"--resume {run_id}: no results for that run in {opts['out']}; "
                    "check the run id (shadow replay lists it in its summary)"
                )
        # Resume: what is left keeps its relative timing, starting now.
        store.start_run(
            run_id,
            source=opts["source"],
            config={k: v for k, v in opts.items() if k != "config_path"}
            | {"config_path": str(opts["config_path"] or "")},
            arms=arm_names,
        )
        pricing = pricing_for(config, opts["pricing"])
        baseline = HttpTarget("baseline", arms["baseline"])
        targets: dict[str, Target] = {
            "baseline": baseline,
            "candidate": HttpTarget("candidate", arms["candidate"]),
        }
        if replay.repeat_baseline:
            targets["baseline_repeat"] = _Alias("baseline_repeat", baseline)
        breakers = {name: CircuitBreaker.from_config(safety) for name in targets}
        writer = AsyncResultsWriter(store, batch_rows=replay.batch_rows)
        loop = asyncio.get_running_loop()
        start = start_at_epoch(opts["start_at"], loop=loop) if opts["start_at"] else None
        if done:
            remaining = [
                i
                for i, item in enumerate(items)
                if any((item.record.trace_id, a) not in done for a in arm_names)
            ]
            if remaining:
                first = offsets[remaining[0]]
                offsets = offsets - first
                offsets[offsets < 0] = 0.0
        replayer = Replayer(
            run_id=run_id,
            items=items,
            offsets=list(offsets),
            targets=targets,
            writer=writer,
            pricing=pricing,
            validators=Validators(config.validators),
            breakers=breakers,
            allowed_paths=replay.allowed_paths,
            max_in_flight=replay.max_in_flight,
            max_cost_usd=safety.max_cost_usd,
            retries=replay.retries,
            done=done,
            source=source,
            start=start,
            grace_s=opts["grace_s"],
        )
        signals = 0

        def on_signal() -> None:
            nonlocal signals
            signals += 1
            if signals == 1:
                console.print(
                    "[yellow]stopping: no new sends; in-flight ones get "
                    f"{opts['grace_s']:.0f} s (Ctrl-C again stops now)[/]"
                )
                replayer.request_stop()
            else:
                replayer.force_stop()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        try:
            if quiet:
                stats = await replayer.run()
            else:
                async with live_progress(replayer.stats, console):
                    stats = await replayer.run()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await writer.aclose()
            for target in targets.values():
                await target.aclose()
        summary = stats.as_dict()
        status = "interrupted" if stats.stopped_early and not stats.budget_exhausted else "done"
        store.finish_run(run_id, status=status, counts=summary)
        store.close()
        summary["out"] = opts["out"]
        summary["dead_letter"] = dead_letter.count
        if opts["as_json"]:
            click.echo(json.dumps(summary))
        else:
            Console().print(summary_table(stats))
            click.echo(
                f"results: {opts['out']} (run {run_id})"
                + (
                    f"; {dead_letter.count} bad records in {dead_letter.path}"
                    if dead_letter.count
                    else ""
                )
            )
        return 1 if stats.stopped_early and not stats.budget_exhausted else 0
    finally:
        dead_letter.close()
        await source.aclose()


class _Alias:
    """The baseline target under another arm name (baseline_repeat)."""

    def __init__(self, arm: str, target: Any) -> None:
        self.arm = arm
        self._target = target

    async def send(self, record: Any, *, due: float) -> Any:
        return await self._target.send(record, due=due)

    async def aclose(self) -> None:
        return None


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


def _new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def _print_dry_run(items: Any, offsets: Any, arms: list[str], allowed: tuple[str, ...]) -> None:
    from shadow.replay.targets import redacted_headers

    click.echo(f"{'due (s)':>10}  {'trace_id':<32} {'path':<24} {'slices'}")
    skipped = 0
    for item, offset in zip(items, offsets, strict=True):
        record = item.record
        if allowed and not record.request.path.startswith(allowed):
            skipped += 1
            continue
        slices = ",".join(f"{k}={v}" for k, v in sorted(record.slices.items()))
        click.echo(f"{offset:>10.3f}  {record.trace_id:<32} {record.request.path:<24} {slices}")
    dropped = redacted_headers(items[0].record.request.headers) if items else []
    click.echo(
        f"{len(items) - skipped} records to {', '.join(arms)} over {float(offsets[-1]):.1f} s; "
        f"{skipped} skipped (path not allowed); headers not replayed: {', '.join(dropped) or '-'}"
    )
