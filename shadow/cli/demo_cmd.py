"""``shadow demo``: the whole flow on embedded defaults, in one command."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

__all__ = ["command"]


@click.command("demo")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("shadow-demo"),
    show_default=True,
    help="Directory for the results, report and logs; a rerun replaces that run's files.",
)
@click.option(
    "--requests",
    type=click.IntRange(1),
    default=None,
    help="Send only the window's first N requests.  [default: all 575]",
)
@click.option(
    "--seconds",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="Send only the window's first S seconds of traffic.  [default: all 32.6]",
)
@click.option(
    "--speed",
    type=click.FloatRange(0, min_open=True),
    default=2.0,
    show_default=True,
    help="Send at the recorded gaps divided by F (1 = the recorded rate).",
)
@click.option(
    "--time-scale",
    type=click.FloatRange(0),
    default=None,
    help="mock-llm's --time-scale for both pipelines (1 = the simulated models' nominal "
    "speed).  [default: 0.25 / --speed, so the models see the same load at any speed]",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the synthetic prompts and of the simulated models' answers.",
)
@click.option(
    "--embedder",
    default="auto",
    show_default=True,
    metavar="SPEC",
    help="Divergence in report.html: auto (MiniLM sentence embeddings when installed, else "
    "lexical), minilm, lexical, or an embeddings API URL (as shadow report --embedder).",
)
@click.option(
    "--keep-running",
    is_flag=True,
    help="Leave the broker, sidecar and both pipelines running afterwards, until Ctrl-C.",
)
def command(
    out: Path,
    requests: int | None,
    seconds: float | None,
    speed: float,
    time_scale: float | None,
    seed: int,
    embedder: str,
    keep_running: bool,
) -> None:
    """Run the whole flow on this machine, with nothing to install or start by hand.

    \b
    1. broker     the embedded Kafka-compatible broker        (shadow broker --port 0)
    2. baseline   a simulated large model                     (shadow mock-llm --profile large)
       candidate  a routing rule: short, easy prompts to a    (shadow mock-llm --profile routed)
                  small model, long or hard ones to the large
    3. capture    the sidecar in front of the baseline, teeing every exchange to Kafka
                                                              (shadow capture)
    4. traffic    575 requests of the public Azure LLM code trace (its busiest 33 s, with a
                  burst of 67 requests/s) through the sidecar with the OpenAI SDK, at the
                  recorded gaps divided by --speed
    5. replay     from Kafka to baseline, candidate and the baseline again (its noise floor)
                                                              (shadow replay --repeat-baseline)
    6. analyze    by prompt size, where the routing differs   (shadow analyze --by size)
       gate       the demo's rules; a failed rule is a finding, printed, not an error
       report     report.html                                 (shadow report)

    Everything listens on 127.0.0.1 on free ports and stops when the demo ends, or at the
    first Ctrl-C (exit 130). Exit 0 when the demo ran, whatever the gate decided; 1 when a
    step failed, with the log to read (DIR/logs/NAME.log starts with the command it ran).

    In DIR: report.html, results.duckdb (for shadow analyze, gate, report), summary.txt and
    summary.json, gate.txt, replay.json, timings.json, logs/. A rerun replaces them.
    Semantic divergence (--embedder auto, when MiniLM is installed) costs 10-30 s of CPU.

    \b
    Examples:
      shadow demo                                  # about a minute, into ./shadow-demo
      shadow demo --out /tmp/demo --requests 100 --speed 1 --embedder lexical
      shadow demo --keep-running                   # then: shadow replay kafka://... yourself
    """
    from shadow.demo.flow import DemoOptions, busy_workers, run

    options = DemoOptions(
        out=out,
        requests=requests,
        seconds=seconds,
        speed=speed,
        time_scale=time_scale,
        seed=seed,
        embedder=embedder,
        keep_running=keep_running,
    )
    code = run(options)
    if code and busy_workers():
        # Interrupted while a worker thread runs native code (an embedding model, DuckDB):
        # finalising the interpreter under it aborts the process. Every child is stopped
        # already; flush and leave without finalising.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if code:
        sys.exit(code)
