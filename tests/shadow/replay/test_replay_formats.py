"""Each captured format replays to its own endpoint, with its API's auth, and reads right.

An Anthropic or Gemini capture replayed as captured (``format = "auto"``) goes to the same
route with the arm's key in that API's style, and its answer (JSON or SSE) is read in that
API's shapes: ok, the text, the reported model, normalised tokens and a TTFT.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from shadow.config import ArmConfig, ModelPrice
from shadow.replay.jobs import ReplayJob, run_replay
from shadow.replay.plan import Pacing
from shadow.replay.pricing import PricingTable
from shadow.trace.jsonl import write_jsonl
from shadow.trace.record import HttpRequest, TraceRecord
from tests.shadow.replay.providers import ANSWER, FIRST_TOKEN_S, USAGE, ProviderServer

MESSAGES = [{"role": "user", "content": "Capital of France?"}]
CAPTURES = {  # trace id → (path, query, body)
    "anthropic": (
        "/v1/messages",
        "",
        {"model": "claude-test", "max_tokens": 50, "messages": MESSAGES},
    ),
    "anthropic-stream": (
        "/v1/messages",
        "",
        {"model": "claude-test", "max_tokens": 50, "messages": MESSAGES, "stream": True},
    ),
    "gemini": (
        "/v1beta/models/gemini-test:generateContent",
        "",
        {"contents": [{"role": "user", "parts": [{"text": "Capital of France?"}]}]},
    ),
    "gemini-stream": (
        "/v1beta/models/gemini-test:streamGenerateContent",
        "alt=sse",
        {"contents": [{"role": "user", "parts": [{"text": "Capital of France?"}]}]},
    ),
}


async def test_anthropic_and_gemini_captures_replay_as_captured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARM_KEY", "arm-own-key")
    records = [
        TraceRecord(
            trace_id=name,
            captured_at=1_700_000_000_000_000_000 + n,
            request=HttpRequest(
                method="POST",
                path=path,
                query=query,
                headers={"content-type": "application/json", "x-api-key": "sk-user"},
                body=json.dumps(body),
            ),
        )
        for n, (name, (path, query, body)) in enumerate(CAPTURES.items())
    ]
    write_jsonl(tmp_path / "t.jsonl", records)
    prices = {
        "claude-test": ModelPrice(input=1.0, output=5.0, cached_input=0.1, cache_write_input=1.25),
        "gemini-test-001": ModelPrice(input=0.1, output=0.4, cached_input=0.025),
    }
    async with ProviderServer() as server:
        arm = ArmConfig(url=server.url, api_key_env="ARM_KEY")
        job = ReplayJob(
            source=str(tmp_path / "t.jsonl"),
            out=str(tmp_path / "run.duckdb"),
            arms={"baseline": arm, "candidate": arm},
            pricing=PricingTable(prices),
            pacing=Pacing(speed=1000.0),
        )
        await run_replay(job)
    assert len(server.arrivals) == 2 * len(CAPTURES)
    for arrival in server.arrivals:
        assert "authorization" not in arrival.headers
        if arrival.target.startswith("/v1/messages"):
            assert arrival.headers["x-api-key"] == "arm-own-key"
            assert arrival.headers["anthropic-version"] == "2023-06-01"
        else:
            assert arrival.headers["x-goog-api-key"] == "arm-own-key"
            assert "x-api-key" not in arrival.headers
    with duckdb.connect(str(tmp_path / "run.duckdb"), read_only=True) as con:
        rows = con.execute(
            "select trace_id, ok, error, model, prompt_tokens, cached_tokens, completion_tokens,"
            " output_text, ttft_ms, cost_usd from results where arm = 'candidate'"
        ).fetchall()
    a, g = USAGE["anthropic"], USAGE["gemini"]
    for trace_id, ok, error, model, prompt, cached, completion, text, ttft, cost in rows:
        assert ok, (trace_id, error)
        assert text == "".join(ANSWER)
        assert cost > 0
        if trace_id.startswith("anthropic"):
            assert model == "claude-test"
            assert (prompt, cached, completion) == (
                a["input"] + a["read"] + a["write"],
                a["read"],
                a["output"],
            )
        else:
            assert model == "gemini-test-001"
            assert (prompt, cached, completion) == (
                g["prompt"],
                g["cached"],
                g["candidates"] + g["thoughts"],
            )
        if trace_id.endswith("stream"):
            assert ttft >= FIRST_TOKEN_S * 1000 / 2  # after the gap, with room for clock noise
