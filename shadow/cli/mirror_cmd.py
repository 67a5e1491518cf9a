"""``shadow mirror``: live shadow traffic from a Kafka topic to a candidate."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from shadow.config import ArmConfig, load_config, override
from shadow.errors import UsageError
from shadow.replay.signals import stop_on_signals

if TYPE_CHECKING:
    from shadow.replay.mirror import Mirror

__all__ = ["command"]


@click.command("mirror")
@click.argument("source", metavar="kafka://BOOTSTRAP/TOPIC")
@click.option("--candidate", metavar="URL", help="Base URL of the candidate pipeline.")
@click.option("--out", default="mirror.duckdb", show_default=True,
              help="Results: a DuckDB file, or DIR/ for Parquet parts.")  # fmt: skip
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--group-id", default="shadow-mirror", show_default=True,
              help="Kafka consumer group: several mirrors split the partitions.")  # fmt: skip
@click.option("--max-in-flight", type=click.IntRange(1), help="Bound on concurrent sends.")
@click.option("--timeout", "timeout_s", type=float, help="Per-request timeout, seconds.")
@click.option("--max-cost-usd", type=float, help="Stop when the priced cost reaches this.")
@click.option("--pricing", type=click.Path(exists=True, dir_okay=False), help="Pricing file.")
@click.option("--allow-unpriced", is_flag=True,
              help="With --max-cost-usd: go on although a model has no price (the cap then "
              "covers priced attempts only).")  # fmt: skip
@click.option("--run-id", help="Name this run (default: mirror-<time>).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=9464, show_default=True,
              help="Prometheus metrics on HOST:PORT/metrics (0 = off).")  # fmt: skip
@click.option("--metrics-host", default="127.0.0.1", show_default=True,
              help="Metrics address (0.0.0.0: a scraper in another container).")  # fmt: skip
@click.option("--grace", "grace_s", type=float, default=30.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON.")
@click.option("--dead-letter", type=click.Path(dir_okay=False),
              help="Where bad records go (default: OUT.dead.jsonl).")  # fmt: skip
def command(**opts: Any) -> None:
    """Mirror live traffic: every record that arrives on the topic goes to the candidate at
    once. The captured production response is stored as arm `production`, the candidate's
    answer as arm `candidate`; analyze the store like any replay. Runs until Ctrl-C/SIGTERM;
    offsets are committed only after results are durable, so a restart resumes where it left.
    If Kafka does not answer at start it keeps trying (0.2 s, doubling up to 5 s) until it
    does. Records that fail validation go to --dead-letter, counted in the summary.

    \b
    Example:
      shadow mirror kafka://127.0.0.1:9092/shadow.traces --candidate http://127.0.0.1:8002 \\
          --out mirror.duckdb
      shadow analyze mirror.duckdb --by intent
    """
    import uvloop

    sys.exit(uvloop.run(_main(opts)))


async def _main(opts: dict[str, Any]) -> int:
    from rich.console import Console

    from shadow.cli.replay_cmd import unpriced_message
    from shadow.replay.budget import UnpricedModelsError
    from shadow.replay.display import summary_table
    from shadow.replay.jobs import MirrorJob, run_mirror
    from shadow.replay.pricing import pricing_for

    if not opts["source"].startswith("kafka://"):
        raise UsageError(
            f"shadow mirror reads a live topic; got {opts['source']!r}, expected "
            "kafka://BOOTSTRAP/TOPIC (use shadow replay for files)"
        )
    config = load_config(opts["config_path"])
    replay = override(config.replay, "replay", max_in_flight=opts["max_in_flight"])
    safety = override(config.safety, "safety", max_cost_usd=opts["max_cost_usd"])
    arm = override(
        config.arms.get("candidate", ArmConfig()),
        "arms.candidate",
        url=opts["candidate"],
        timeout_s=opts["timeout_s"],
    )
    if not arm.url:
        raise UsageError("no candidate URL: pass --candidate URL (or set arms.candidate.url)")
    job = MirrorJob(
        source=opts["source"],
        out=opts["out"],
        candidate=arm,
        pricing=pricing_for(config, opts["pricing"]),
        replay=replay,
        safety=safety,
        validators=config.validators,
        group_id=opts["group_id"],
        run_id=opts["run_id"],
        grace_s=opts["grace_s"],
        dead_letter=opts["dead_letter"],
        allow_unpriced=opts["allow_unpriced"],
    )
    try:
        outcome = await run_mirror(job, watch=_watcher(opts, arm.url))
    except UnpricedModelsError as exc:
        raise UsageError(unpriced_message(exc)) from None
    if opts["as_json"]:
        click.echo(json.dumps(outcome.summary))
    else:
        Console().print(summary_table(outcome.stats))
        click.echo(
            f"results: {opts['out']} (run {outcome.run_id}); "
            f"{outcome.dead_letter_count} bad records in {outcome.dead_letter_path}"
        )
    if outcome.stats.budget_unenforceable:
        click.echo(outcome.stats.budget_unenforceable, err=True)
    return 1 if outcome.status == "budget_exhausted" else 0


def _watcher(
    opts: dict[str, Any], url: str
) -> Callable[[Mirror], AbstractAsyncContextManager[None]]:
    """The metrics endpoint, the start line and Ctrl-C (or SIGTERM) handling around a mirror."""

    @contextlib.asynccontextmanager
    async def watch(mirror: Mirror) -> AsyncIterator[None]:
        from prometheus_client import start_http_server
        from rich.console import Console

        from shadow.replay.metrics import metrics_registry

        console = Console(stderr=True)
        if opts["metrics_port"]:
            registry = metrics_registry(mirror.stats, dead_letter=mirror.dead_letter)
            start_http_server(opts["metrics_port"], addr=opts["metrics_host"], registry=registry)
        console.print(
            f"mirroring {opts['source']} -> {url} into {opts['out']} (run {mirror.run_id}); "
            + (
                f"metrics on http://{opts['metrics_host']}:{opts['metrics_port']}/metrics; "
                if opts["metrics_port"]
                else ""
            )
            + (f"bad records to {mirror.dead_letter.path}; " if mirror.dead_letter else "")
            + "Ctrl-C stops"
        )
        with stop_on_signals(mirror):
            yield

    return watch
