"""``shadow gate``: pass or fail a run against rules, for CI."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from shadow.cli.analysis_options import (
    analysis_options,
    analysis_settings,
    load_embedder_spec,
    open_results,
)
from shadow.config import load_config
from shadow.errors import UsageError

__all__ = ["command"]


@click.command("gate")
@click.argument("run_path", metavar="RUN")
@click.option("--rules", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="TOML file with [[gate]] rules (see examples/gates.toml).")  # fmt: skip
@click.option("--run-id", help="Which run of the store (default: the latest).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)  # fmt: skip
@analysis_options
def command(run_path: str, rules: Path, run_id: str | None, fmt: str, **options: Any) -> None:
    """Judge the candidate against the baseline with the rules of a gates file.

    A relative rule (max_increase_pct, max_decrease_pct) fails only when the whole 95%
    interval of the change lies beyond its bound, so noise alone never fails a build; max/min
    rules compare the candidate's figure itself (by its interval where it has one, as
    excess_divergence does). The rules file may hold an [analysis] section (SLOs, pins,
    min_samples); --config and the flags override it. Exit 0 when every rule passes, 1 when a
    regression is found (each failure explained in one line), 2 for bad input.

    \b
    Example gates.toml:
      [[gate]]
      metric = "latency_p99_ms"
      max_increase_pct = 10
      by = ["intent"]
      min_samples = 50
    \b
      shadow gate run.duckdb --rules gates.toml || echo "regression: do not ship"
    """
    from analysis.gate import evaluate, verdict_lines

    config = load_config(rules)
    if not config.gate:
        raise UsageError(f"{rules} has no [[gate]] rules; see examples/gates.toml")
    if options["config_path"] is None:
        options["config_path"] = rules
    settings = analysis_settings(**options)
    verdicts = evaluate(
        open_results(run_path, run_id),
        config.gate,
        embedder=load_embedder_spec(settings),
        settings=settings,
    )
    failed = [v for v in verdicts if v.status == "fail"]
    if fmt == "json":
        click.echo(json.dumps({"passed": not failed, "verdicts": [v.as_dict() for v in verdicts]}))
    else:
        click.echo("\n".join(verdict_lines(verdicts)))
    if failed:
        sys.exit(1)
