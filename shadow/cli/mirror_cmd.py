"""``shadow mirror``: live shadow traffic from a Kafka topic to a candidate."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import click

from shadow.config import ArmConfig, load_config, override
from shadow.errors import UsageError

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
@click.option("--run-id", help="Name this run (default: mirror-<time>).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=9464, show_default=True,
              help="Prometheus metrics on HOST:PORT/metrics (0 = off).")  # fmt: skip
@click.option("--metrics-host", default="127.0.0.1", show_default=True,
              help="Metrics address (0.0.0.0: a scraper in another container).")  # fmt: skip
@click.option("--grace", "grace_s", type=float, default=30.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON.")
def command(**opts: Any) -> None:
    """Mirror live traffic: every record that arrives on the topic goes to the candidate at
    once. The captured production response is stored as arm `production`, the candidate's
    answer as arm `candidate`; analyze the store like any replay. Runs until Ctrl-C/SIGTERM;
    offsets are committed only after results are durable, so a restart resumes where it left.

    \b
    Example:
      shadow mirror kafka://127.0.0.1:9092/shadow.traces --candidate http://127.0.0.1:8002 \\
          --out mirror.duckdb
      shadow analyze mirror.duckdb --by intent
    """
    import uvloop

    sys.exit(uvloop.run(_main(opts)))


async def _main(opts: dict[str, Any]) -> int:
    from prometheus_client import start_http_server
    from rich.console import Console

    from shadow.replay.breaker import CircuitBreaker
    from shadow.replay.display import summary_table
    from shadow.replay.mirror import Mirror, metrics_registry
    from shadow.replay.pricing import pricing_for
    from shadow.replay.sources import open_source
    from shadow.replay.targets import HttpTarget
    from shadow.replay.validators import Validators
    from shadow.results.store import open_results
    from shadow.results.writer import AsyncResultsWriter
    from shadow.trace.deadletter import DeadLetterFile

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
    run_id = opts["run_id"] or "mirror-" + __import__("time").strftime("%Y%m%d-%H%M%S")
    dead_letter = DeadLetterFile(f"{opts['out'].rstrip('/')}.dead.jsonl")
    source = open_source(
        opts["source"], dead_letter=dead_letter, group_id=opts["group_id"], follow=True
    )
    store = open_results(opts["out"])
    store.start_run(run_id, source=opts["source"], config={"candidate": arm.url},
                    arms=["production", "candidate"])  # fmt: skip
    pricing = pricing_for(config, opts["pricing"])
    target = HttpTarget("candidate", arm)
    writer = AsyncResultsWriter(store, batch_rows=replay.batch_rows, flush_interval_s=1.0)
    mirror = Mirror(
        run_id=run_id,
        source=source,
        targets={"candidate": target},
        writer=writer,
        pricing=pricing,
        validators=Validators(config.validators),
        breakers={"candidate": CircuitBreaker.from_config(safety)},
        allowed_paths=replay.allowed_paths,
        max_in_flight=replay.max_in_flight,
        max_cost_usd=safety.max_cost_usd,
        grace_s=opts["grace_s"],
    )
    console = Console(stderr=True)
    if opts["metrics_port"]:
        start_http_server(opts["metrics_port"], addr=opts["metrics_host"],
                          registry=metrics_registry(mirror.stats))  # fmt: skip
    console.print(
        f"mirroring {opts['source']} -> {arm.url} into {opts['out']} (run {run_id}); "
        + (
            f"metrics on http://{opts['metrics_host']}:{opts['metrics_port']}/metrics; "
            if opts["metrics_port"]
            else ""
        )
        + "Ctrl-C stops"
    )
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            mirror.request_stop()
        else:
            mirror.force_stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        stats = await mirror.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await writer.aclose()
        await target.aclose()
        await source.aclose()
        dead_letter.close()
    summary = stats.as_dict()
    store.finish_run(run_id, status="done", counts=summary)
    store.close()
    if opts["as_json"]:
        click.echo(json.dumps(summary))
    else:
        Console().print(summary_table(stats))
    return 0
