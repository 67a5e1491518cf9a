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
@click.option("--allow-inconclusive", is_flag=True,
              help="Exit 0 when no check fails but some cannot tell (and say so).")  # fmt: skip
@analysis_options
def command(run_path: str, rules: Path, run_id: str | None, fmt: str, allow_inconclusive: bool,
            **options: Any) -> None:  # fmt: skip
    """Judge the candidate against the baseline with the rules of a gates file.

    Each rule on each slice is PASS (its 95% interval lies wholly within the bound), FAIL
    (wholly beyond) or INCONCLUSIVE (the interval straddles the bound: the run cannot tell),
    with the smallest change the run could detect (mde, 80% power) and, when inconclusive,
    roughly how many traces would settle it. Relative rules (max_increase_pct,
    max_decrease_pct) judge the change against the baseline; max/min rules the candidate's
    figure (by its interval where it has one, as excess_divergence does, else its value).
    The rules file may hold an [analysis] section (SLOs, pins); --config and the flags
    override it.

    Exit 0 only when every judged check passes; 1 on any FAIL or INCONCLUSIVE (0 for
    inconclusive with --allow-inconclusive), and 1 when a rule judged nothing (every slice
    too small, no baseline_repeat arm for a divergence rule, no TTFT on a non-streamed run),
    with the reason; 2 for bad input (an unknown figure, a by slice the run does not have).

    \b
    Example gates.toml:
      [[gate]]
      metric = "latency_p99_ms"
      max_increase_pct = 10
      by = ["intent"]
      min_samples = 100
    \b
      shadow gate run.duckdb --rules gates.toml || echo "regression or not sure: do not ship"
    """
    from analysis.gate import judge

    config = load_config(rules)
    if not config.gate:
        raise UsageError(f"{rules} has no [[gate]] rules; see examples/gates.toml")
    if options["config_path"] is None:
        options["config_path"] = rules
    settings = analysis_settings(**options)
    outcome = judge(
        open_results(run_path, run_id, options["slice_exprs"]),
        config.gate,
        allow_inconclusive=allow_inconclusive,
        embedder=load_embedder_spec(settings),
        settings=settings,
    )
    if fmt == "json":
        click.echo(json.dumps(outcome.to_json()))
    else:
        lines = outcome.lines()
        if outcome.verdict == "inconclusive" and allow_inconclusive:
            lines.append("gate: exit 0: inconclusive checks allowed (--allow-inconclusive)")
        click.echo("\n".join(lines))
    sys.exit(outcome.exit_code)
