"""``shadow analyze``: latency, tokens and cost per successful response, by arm and slice."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from analysis.result import AnalysisResult

from shadow.cli.analysis_options import (
    analysis_options,
    analysis_settings,
    load_embedder_spec,
    open_results,
    slice_keys,
)

__all__ = ["command"]


@click.command("analyze")
@click.argument("run_path", metavar="RUN")
@click.option("--by", default="", metavar="SLICE[,SLICE]",
              help="Group by slice labels, e.g. --by intent or --by tenant,size.")  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True)  # fmt: skip
@click.option("--pricing", type=click.Path(exists=True, dir_okay=False),
              help="Re-price the run with this pricing file (TOML or LiteLLM JSON).")  # fmt: skip
@click.option("--run-id", help="Which run of the store (default: the latest).")
@click.option("--bootstrap", "n_boot", type=click.IntRange(100), default=1000, show_default=True,
              help="Bootstrap resamples for the 95% intervals of small samples.")  # fmt: skip
@analysis_options
def command(run_path: str, by: str, fmt: str, pricing: str | None, run_id: str | None,
            n_boot: int, **options: Any) -> None:  # fmt: skip
    """Summarise a replay or mirror run by arm and slice: n, ok rate, latency and TTFT
    p50/p95/p99, TPOT and per-chunk ITL, schedule lag, tokens, errors by class, goodput under
    SLOs, cost and cost per successful response; for each arm its relative change against the
    baseline with a 95% interval, and tests (Mann-Whitney on latency, Fisher on ok, KS on
    output tokens; Benjamini-Hochberg q across slices).

    RUN is the DuckDB file (or Parquet DIR/) that shadow replay or shadow mirror wrote.
    Percentiles are linear-interpolated over every attempt that has the value (errors and
    timeouts included); cost per success = cost of all attempts / successful ones.
    Divergence of each arm's outputs from the baseline's (0 = same, 1 = unrelated) is
    semantic (1 - cosine of MiniLM embeddings) when installed, else lexical (1 - token F1),
    structural for JSON; excess = divergence minus the baseline-vs-baseline_repeat noise floor
    (replay with --repeat-baseline). A slice is flagged when its excess clears both
    [analysis] flag_abs and flag_rel x the noise floor. Below the table: replay fidelity
    (replayed baseline vs production) and alarms (e.g. a response from an unpinned model).

    \b
    Examples:
      shadow analyze run.duckdb
      shadow analyze run.duckdb --by intent --slo ttft=2000,tpot=100 --pin candidate=gpt-4o-mini
      shadow analyze run.duckdb --by intent --format json | jq '.groups[] | {slice, arm, delta}'
      shadow analyze run.duckdb --by tenant,size --pricing litellm_prices.json --format csv
    """
    from analysis.analyze import analyze
    from shadow.replay.pricing import load_pricing

    settings = analysis_settings(**options)
    embedder = load_embedder_spec(settings)
    run = open_results(run_path, run_id, options["slice_exprs"])
    if pricing:
        run = run.reprice(load_pricing(pricing))
    keys = slice_keys(by)
    result = analyze(run, keys, n_boot=n_boot, embedder=embedder, settings=settings)
    if fmt == "json":
        click.echo(json.dumps(result.to_json()))
    elif fmt == "csv":
        click.echo(_csv(result.to_json(), keys), nl=False)
    else:
        _table(result)


def _flat(group: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    row = {name: group["slice"][name] for name in keys}
    row.update({k: v for k, v in group.items() if k not in ("slice", "delta", "tests")})
    for name in ("models", "errors"):
        if name in row:
            row[name] = json.dumps(row[name])
    for test, values in (group.get("tests") or {}).items():
        row[f"{test}_p"] = values["p"]
        row[f"{test}_q"] = values["q"]
    for figure, delta in (group.get("delta") or {}).items():
        row[f"delta_{figure}"] = delta["change"]
        row[f"delta_{figure}_lo"] = delta["lo"]
        row[f"delta_{figure}_hi"] = delta["hi"]
    return row


def _csv(result: dict[str, Any], keys: list[str]) -> str:
    import csv
    import io

    rows = [_flat(g, keys) for g in result["groups"]]
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _table(result: AnalysisResult) -> None:
    from rich.console import Console

    from analysis.table import summary_notes, summary_table

    console = Console()
    if not console.is_terminal:  # piped or captured: never squeeze the table into 80 columns
        console = Console(width=max(console.width, 200))
    console.print(summary_table(result))
    for line in summary_notes(result):
        console.print(line)
