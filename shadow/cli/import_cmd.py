"""``shadow import``: turn public trace formats into TraceRecord JSONL files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from shadow.errors import UsageError
from shadow.trace.azure import (
    DEFAULT_MODEL,
    LONG_MIN_TOKENS,
    MEDIUM_MIN_TOKENS,
    iter_records,
    read_azure_csv,
    select_rows,
    service_name,
)
from shadow.trace.jsonl import write_jsonl

__all__ = ["command"]


@click.group("import")
def command() -> None:
    """Turn public trace formats into TraceRecords (JSONL) that `shadow replay` reads.

    \b
    Formats:
      azure   the Azure LLM inference trace CSV (TIMESTAMP,ContextTokens,GeneratedTokens)
    """


@command.command(
    "azure",
    epilog=(
        f"Slices: size is short (< {MEDIUM_MIN_TOKENS:,} context tokens), medium, or long "
        f"(>= {LONG_MIN_TOKENS:,}); tenant (acme 50%, globex 25%, initech 15%, umbrella 10%) and "
        "intent (complete 55%, explain 15%, refactor 12%, debug 10%, test 8%) are synthetic, "
        "drawn per row from --seed; model is --model; turns, prompt_size, tools, tool_calls, "
        "stream and format are the request features every capture has. "
        "Data: the Azure Public Dataset (AzureLLMInferenceDataset2023), CC-BY 4.0; cite Patel et "
        'al., "Splitwise: Efficient generative LLM inference using phase splitting", ISCA 2024.'
    ),
)
@click.argument("csv_path", metavar="CSV", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="JSONL file to write (atomically: all records or no file).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Keep at most this many records (after the window).",
)
@click.option(
    "--window-start",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Skip records earlier than this many seconds after the file's first record.",
)
@click.option(
    "--window-seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Keep only records within this many seconds from the window start.  [default: to the end]",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the synthetic prompts, tenants and intents.",
)
@click.option(
    "--model",
    default=DEFAULT_MODEL,
    show_default=True,
    help="Model the requests ask for (the body's model and the model slice).",
)
@click.option(
    "--stream/--no-stream",
    default=True,
    show_default=True,
    help="Write streamed requests that ask for the usage chunk (stream_options.include_usage), "
    "so a replay measures TTFT; --no-stream writes plain requests.",
)
def azure(
    csv_path: Path,
    out: Path,
    limit: int | None,
    window_start: float,
    window_seconds: float | None,
    seed: int,
    model: str,
    stream: bool,
) -> None:
    """Import an Azure LLM inference trace CSV as chat completion TraceRecords.

    Each row becomes a POST /v1/chat/completions request at the recorded time (kept to the
    nanosecond), with a synthetic prompt of exactly ContextTokens tokens (whitespace-separated
    words, the rule `shadow mock-llm` counts by) and max_tokens = GeneratedTokens (at least 1),
    streamed with stream_options.include_usage unless --no-stream.
    The same --seed gives the same records; a record does not depend on the window or limit
    that selects it. The whole file is checked before anything is written.

    \b
    Examples:
      shadow import azure azure_llm_code_2023.csv --out traces.jsonl
      shadow import azure azure_llm_code_2023.csv --out burst.jsonl \\
          --window-start 600 --window-seconds 60 --limit 500
    """
    rows = select_rows(
        read_azure_csv(csv_path),
        window_start=window_start,
        window_seconds=window_seconds,
        limit=limit,
    )
    if not rows:
        raise UsageError(
            f"no records of {csv_path} fall in the window starting {window_start:g} s after "
            "its first record; lower --window-start or widen --window-seconds"
        )
    records = iter_records(
        rows, service=service_name(csv_path), seed=seed, model=model, stream=stream
    )
    try:
        count = write_jsonl(out, records)
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None
    first, last = rows[0].captured_at, rows[-1].captured_at
    click.echo(
        f"wrote {count:,} records ({_iso(first)}..{_iso(last)}, span "
        f"{(last - first) / 1e9:,.3f} s) to {out}"
    )


def _iso(ns: int) -> str:
    """Epoch nanoseconds as an ISO UTC time with all nine fractional digits."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{fraction:09d}Z"
