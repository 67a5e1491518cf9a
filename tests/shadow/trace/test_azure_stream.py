"""``shadow import azure`` writes streamed requests that ask for usage, and request features."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from shadow.sim import MockLLMServer
from shadow.trace.azure import import_azure
from shadow.trace.record import TraceRecord, decode

HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
SHAPES = [(10, 4), (300, 6), (2000, 8), (5000, 3), (20000, 2), (70000, 5)]
ROWS = "".join(f"2024-01-01 00:00:0{s}.5,{ctx},{gen}\n" for s, (ctx, gen) in enumerate(SHAPES))


def _csv(tmp_path: Path) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text(HEADER + ROWS)
    return path


def _body(record: TraceRecord) -> dict[str, object]:
    body = json.loads(record.request.body or "")
    assert isinstance(body, dict)
    return body


def test_records_stream_with_usage_by_default_and_plain_when_asked(tmp_path: Path) -> None:
    """stream + stream_options.include_usage by default; stream=False writes neither."""
    streamed = import_azure(_csv(tmp_path))
    plain = import_azure(_csv(tmp_path), stream=False)
    for s, p in zip(streamed, plain, strict=True):
        assert _body(s)["stream"] is True
        assert _body(s)["stream_options"] == {"include_usage": True}
        assert "stream" not in _body(p)
        assert "stream_options" not in _body(p)
        assert {k: v for k, v in _body(s).items() if not k.startswith("stream")} == _body(p)
        assert (s.slices["stream"], p.slices["stream"]) == ("yes", "no")


def test_records_carry_the_request_features(tmp_path: Path) -> None:
    """turns 1, prompt_size from ContextTokens, no tools, format openai, beside size/tenant."""
    records = import_azure(_csv(tmp_path))
    assert [r.slices["prompt_size"] for r in records] == [
        "<256", "256-1k", "1k-4k", "4k-16k", "16k-64k", "64k+"
    ]  # fmt: skip
    for record in records:
        assert {k: record.slices[k] for k in ("turns", "tools", "tool_calls", "format")} == {
            "turns": "1", "tools": "no", "tool_calls": "no", "format": "openai"
        }  # fmt: skip
        assert {"size", "tenant", "intent", "model"} <= set(record.slices)


def _shadow(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shadow", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("stream", [True, False])
def test_cli_imported_traces_measure_ttft_on_replay(tmp_path: Path, stream: bool) -> None:
    """Imported (default) traces replayed to mock-llm have TTFT and reported usage on every
    attempt; --no-stream ones have neither TTFT nor a stream."""
    out = tmp_path / "traces.jsonl"
    flags = [] if stream else ["--no-stream"]
    imported = _shadow("import", "azure", _csv(tmp_path), "--out", out, *flags)
    assert imported.returncode == 0, imported.stderr
    records = [decode(line) for line in out.read_bytes().splitlines()]
    assert [_body(r).get("stream", False) for r in records] == [stream] * len(records)
    run = tmp_path / "run.duckdb"
    with MockLLMServer("large", seed=1, time_scale=0) as target:
        replayed = _shadow(
            "replay", out, "--baseline", target.url, "--candidate", target.url,
            "--speed", "100", "--out", run, "--quiet",
        )  # fmt: skip
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    with duckdb.connect(str(run), read_only=True) as con:
        rows = con.execute(
            "SELECT count(*), count(ttft_ms), count(*) FILTER (WHERE ok),"
            " count(*) FILTER (WHERE completion_tokens > 0) FROM results"
        ).fetchone()
    assert rows is not None
    n = 2 * len(records)
    assert rows == ((n, n, n, n) if stream else (n, 0, n, n))
