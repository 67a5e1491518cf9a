"""``shadow report``: one self-contained HTML page that judges a run, for people."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from shadow.cli.analysis_options import (
    analysis_options,
    analysis_settings,
    load_embedder_spec,
    open_results,
    slice_keys,
)
from shadow.errors import UsageError

__all__ = ["command"]


@click.command("report")
@click.argument("run_path", metavar="RUN")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the HTML page, e.g. report.html.",
)
@click.option(
    "--by",
    default="",
    metavar="SLICE[,SLICE]",
    help="Slice the by-slice charts, e.g. --by intent or --by tenant,size.",
)
@click.option(
    "--rules",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A gates file ([[gate]] rules, as shadow gate): its verdict heads the page.",
)
@click.option("--run-id", help="Which run of the store (default: the latest).")
@click.option(
    "--pricing",
    type=click.Path(exists=True, dir_okay=False),
    help="Re-price the run with this pricing file (TOML or LiteLLM JSON).",
)
@click.option(
    "--examples",
    "top_k",
    type=click.IntRange(0, 100),
    default=8,
    show_default=True,
    help="How many of the most divergent outputs to show side by side.",
)
@analysis_options
def command(
    run_path: str,
    out: Path,
    by: str,
    rules: Path | None,
    run_id: str | None,
    pricing: str | None,
    top_k: int,
    **options: Any,
) -> None:
    """Write one HTML page that tells whether to ship the candidate: the gate's verdict (with
    --rules), the headline changes against the baseline with 95% intervals, latency CDFs,
    tail latency by slice, TTFT and TPOT, tokens, cost per successful response, divergence,
    a timeline of the run and the most divergent outputs side by side.

    RUN is the DuckDB file (or Parquet DIR/) that shadow replay or shadow mirror wrote. The
    page is one file with plotly.js inside: it opens offline, attaches to an email or a CI
    artifact, and loads nothing from the network. The report path is printed at the end; the
    exit code is 0 even when the gate fails (CI judges with shadow gate).

    \b
    Examples:
      shadow report run.duckdb --out report.html
      shadow report run.duckdb --out report.html --by intent --rules gates.toml
      shadow report run.duckdb --out report.html --by tenant,size --pricing prices.json
    """
    from analysis.report.page import write_report
    from shadow.replay.pricing import load_pricing

    if options["config_path"] is None and rules is not None:
        options["config_path"] = rules
    settings = analysis_settings(**options)
    model = load_embedder_spec(settings)
    stored = open_results(run_path, run_id, options["slice_exprs"])
    run = stored
    try:
        if pricing:
            run = stored.reprice(load_pricing(pricing))
        _check_out(out)
        keys = slice_keys(by)  # write_report's analyze refuses a slice the run lacks
        path = write_report(
            run, out, by=keys, rules=rules, embedder=model, top_k=top_k, settings=settings
        )
    finally:
        run.close()
        stored.close()
    click.echo(str(path))


def _check_out(out: Path) -> None:
    """--out must name a file in a folder that exists."""
    if out.is_dir():
        raise UsageError(f"--out {out} is a directory; give a file name such as report.html")
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: the folder {out.parent} does not exist; create it first")
