"""Candidates on another provider, end to end: OpenAI captures replayed to Anthropic and Gemini.

The baseline is an OpenAI-shaped server, the candidate one that answers as Anthropic or Gemini
document (tests/shadow/replay/providers.py), both real servers on 127.0.0.1. The arms' answers
come back in the common form: ok, the same text, tokens normalised (cache reads and writes
included), cost, TTFT at the first content token; what cannot be translated is sent to no arm.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from shadow.config import ArmConfig, ModelPrice, parse_config
from shadow.errors import ConfigError
from shadow.replay.jobs import MirrorJob, ReplayJob, run_mirror, run_replay
from shadow.replay.plan import Pacing
from shadow.replay.pricing import PricingTable
from shadow.trace.jsonl import write_jsonl
from shadow.trace.record import HttpRequest, TraceRecord
from shadow.wire.translate import ANTHROPIC_MAX_TOKENS
from tests.shadow.replay.providers import ANSWER, FIRST_TOKEN_S, USAGE, ProviderServer

T0 = 1_700_000_000_000_000_000
PRICES = {
    "gpt-test": ModelPrice(input=2.5, output=10.0, cached_input=1.25),
    "claude-test": ModelPrice(input=0.8, output=4.0, cached_input=0.08, cache_write_input=1.0),
    "gemini-test-001": ModelPrice(input=0.1, output=0.4, cached_input=0.025),
}
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}
REQUESTS: dict[str, tuple[str, dict[str, Any]]] = {
    "plain": (
        "/v1/chat/completions",
        {
            "model": "gpt-test",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Capital of France?"},
            ],
            "temperature": 0.2,
            "stop": ["\n\n"],
        },
    ),
    "stream": (
        "/v1/chat/completions",
        {
            "model": "gpt-test",
            "messages": [{"role": "user", "content": "Capital of France?"}],
            "stream": True,
            "max_tokens": 64,
        },
    ),
    "tools": (
        "/v1/chat/completions",
        {
            "model": "gpt-test",
            "messages": [
                {"role": "user", "content": "Weather in Paris, and its capital status?"},
                {"role": "assistant", "content": None, "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 18}'},
            ],
            "tools": TOOLS,
        },
    ),
    "n2": (
        "/v1/chat/completions",
        {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "n": 2},
    ),
    "embed": ("/v1/embeddings", {"model": "gpt-test", "input": "hi"}),
}
SENT = ("plain", "stream", "tools")


def trace_file(tmp_path: Path) -> str:
    records = [
        TraceRecord(
            trace_id=name,
            captured_at=T0 + i * 1_000_000,
            request=HttpRequest(
                method="POST",
                path=path,
                headers={"content-type": "application/json", "authorization": "Bearer sk-user"},
                body=json.dumps(body),
            ),
        )
        for i, (name, (path, body)) in enumerate(REQUESTS.items())
    ]
    source = tmp_path / "traces.jsonl"
    write_jsonl(source, records)
    return str(source)


def results(out: Path) -> dict[tuple[str, str], dict[str, Any]]:
    columns = (
        "trace_id, arm, ok, error, model, prompt_tokens, completion_tokens, cached_tokens,"
        " cost_usd, output_text, ttft_ms, sent_at"
    )
    with duckdb.connect(str(out), read_only=True) as con:
        cursor = con.execute(f"select {columns} from results where attempt = 0")
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return {(r["trace_id"], r["arm"]): r for r in rows}


def expected_tokens(fmt: str) -> tuple[str, int, int, int, int]:
    """(model, prompt, completion, cached, cache writes) the candidate must report."""
    if fmt == "anthropic":
        u = USAGE["anthropic"]
        prompt = u["input"] + u["read"] + u["write"]
        return "claude-test", prompt, u["output"], u["read"], u["write"]
    g = USAGE["gemini"]
    return "gemini-test-001", g["prompt"], g["candidates"] + g["thoughts"], g["cached"], 0


@pytest.mark.parametrize("fmt", ["anthropic", "gemini"])
async def test_an_openai_capture_replays_to_a_candidate_on_another_provider(
    fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASELINE_KEY", "sk-openai-own")
    monkeypatch.setenv("CANDIDATE_KEY", "candidate-own-key")
    model = "claude-test" if fmt == "anthropic" else "gemini-test"
    out = tmp_path / "run.duckdb"
    pricing = PricingTable(PRICES)
    async with ProviderServer() as baseline, ProviderServer() as candidate:
        job = ReplayJob(
            source=trace_file(tmp_path),
            out=str(out),
            arms={
                "baseline": ArmConfig(url=baseline.url, api_key_env="BASELINE_KEY"),
                "candidate": ArmConfig(
                    url=candidate.url,
                    api_key_env="CANDIDATE_KEY",
                    format=fmt,  # type: ignore[arg-type]
                    body_overrides={"model": model},
                ),
            },
            pricing=pricing,
            pacing=Pacing(speed=1000.0),
        )
        outcome = await run_replay(job)

    # Untranslatable records went to no arm, counted with what could not be translated.
    assert outcome.summary["skipped_untranslatable"] == 2
    assert outcome.summary["untranslatable"] == {
        "n > 1": 1,
        f"/v1/embeddings has no {fmt} equivalent (only chat completions translate)": 1,
    }
    assert len(baseline.arrivals) == len(candidate.arrivals) == len(SENT)
    rows = results(out)
    for name in ("n2", "embed"):
        for arm in ("baseline", "candidate"):
            assert rows[name, arm]["error"] == "skipped_untranslatable"
            assert rows[name, arm]["sent_at"] is None

    # Each arm got its own endpoint, its own key in its API's style, nothing captured.
    for arrival in baseline.arrivals:
        assert arrival.target == "/v1/chat/completions"
        assert arrival.headers["authorization"] == "Bearer sk-openai-own"
    for arrival in candidate.arrivals:
        assert "authorization" not in arrival.headers
        assert arrival.headers["content-type"] == "application/json"
        if fmt == "anthropic":
            assert arrival.target == "/v1/messages"
            assert arrival.headers["x-api-key"] == "candidate-own-key"
            assert arrival.headers["anthropic-version"] == "2023-06-01"
            assert "x-goog-api-key" not in arrival.headers
        else:
            assert arrival.target in (
                f"/v1beta/models/{model}:generateContent",
                f"/v1beta/models/{model}:streamGenerateContent?alt=sse",
            )
            assert arrival.headers["x-goog-api-key"] == "candidate-own-key"
            assert "x-api-key" not in arrival.headers
    bodies = [json.loads(a.body) for a in candidate.arrivals]
    if fmt == "anthropic":
        by_first = {b["messages"][0]["content"][0]["text"][:7]: b for b in bodies}
        assert {b["model"] for b in bodies} == {"claude-test"}
        assert sorted(b["max_tokens"] for b in bodies) == [
            64,
            ANTHROPIC_MAX_TOKENS,
            ANTHROPIC_MAX_TOKENS,
        ]
        assert any(
            b.get("system") == "Be brief." and b["stop_sequences"] == ["\n\n"] for b in bodies
        )
        assert any(b.get("stream") is True for b in bodies)
        tooled = by_first["Weather"]
        assert tooled["tools"][0]["input_schema"] == TOOLS[0]["function"]["parameters"]
        assert tooled["messages"][1]["content"][0]["type"] == "tool_use"
        assert tooled["messages"][2]["content"][0]["type"] == "tool_result"
    else:
        assert all("model" not in b for b in bodies)
        assert any(b.get("systemInstruction") == {"parts": [{"text": "Be brief."}]} for b in bodies)
        tooled = next(b for b in bodies if "tools" in b)
        assert tooled["contents"][1]["role"] == "model"
        assert tooled["contents"][2]["parts"][0]["functionResponse"]["name"] == "get_weather"

    # The answers, in the common form, compare directly.
    model_seen, prompt, completion, cached, written = expected_tokens(fmt)
    for name in SENT:
        base, cand = rows[name, "baseline"], rows[name, "candidate"]
        assert base["ok"], base
        assert cand["ok"], cand
        assert base["output_text"] == cand["output_text"] == "".join(ANSWER)
        assert base["model"] == "gpt-test"
        assert cand["model"] == model_seen
        u: dict[str, int] = USAGE["openai"]
        assert (base["prompt_tokens"], base["completion_tokens"], base["cached_tokens"]) == (
            u["prompt"],
            u["completion"],
            u["cached"],
        )
        assert (cand["prompt_tokens"], cand["completion_tokens"], cand["cached_tokens"]) == (
            prompt,
            completion,
            cached,
        )
        assert base["cost_usd"] == pytest.approx(
            pricing.cost("gpt-test", u["prompt"], u["completion"], u["cached"])
        )
        assert cand["cost_usd"] == pytest.approx(
            pricing.cost(model_seen, prompt, completion, cached, written)
        )
        assert cand["cost_usd"] > 0
    for arm in ("baseline", "candidate"):  # TTFT at the first content token, not the first event
        assert rows["stream", arm]["ttft_ms"] >= FIRST_TOKEN_S * 1000 / 2  # after the gap


async def test_the_mirror_translates_for_its_candidate_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CANDIDATE_KEY", "candidate-own-key")
    async with ProviderServer() as candidate:
        job = MirrorJob(
            source=trace_file(tmp_path),
            out=str(tmp_path / "mirror.duckdb"),
            candidate=ArmConfig(
                url=candidate.url,
                api_key_env="CANDIDATE_KEY",
                format="anthropic",
                body_overrides={"model": "claude-test"},
            ),
            pricing=PricingTable(PRICES),
            wait_for_kafka=False,
        )
        outcome = await run_mirror(job)
    assert outcome.summary["skipped_untranslatable"] == 2
    assert [a.target for a in candidate.arrivals] == ["/v1/messages"] * len(SENT)
    assert {a.headers["x-api-key"] for a in candidate.arrivals} == {"candidate-own-key"}
    rows = results(tmp_path / "mirror.duckdb")
    assert all(rows[name, "candidate"]["ok"] for name in SENT)
    assert rows["stream", "candidate"]["prompt_tokens"] == expected_tokens("anthropic")[1]


def test_a_translated_arm_names_its_model() -> None:
    """``format`` in shadow.toml: a translating arm needs the model it asks the other API for."""
    config = parse_config(
        {"arms": {"candidate": {"format": "gemini", "body_overrides": {"model": "gemini-test"}}}}
    )
    assert config.arms["candidate"].format == "gemini"
    assert parse_config({"arms": {"baseline": {}}}).arms["baseline"].format == "auto"
    with pytest.raises(ConfigError, match=r"arms\.candidate\.format .*body_overrides"):
        parse_config({"arms": {"candidate": {"format": "anthropic"}}})
    with pytest.raises(ConfigError, match="one of"):
        parse_config({"arms": {"candidate": {"format": "cohere"}}})


async def test_shadow_replay_translates_for_an_arm_configured_in_shadow_toml(
    tmp_path: Path,
) -> None:
    """The CLI end to end: `format` and the model from shadow.toml, the key from the env."""
    config = tmp_path / "shadow.toml"
    config.write_text(
        '[arms.candidate]\nformat = "gemini"\napi_key_env = "GEMINI_KEY"\n'
        'body_overrides = { model = "gemini-test" }\n'
        '[pricing."gpt-test"]\ninput = 2.5\noutput = 10.0\n'
        '[pricing."gemini-test-001"]\ninput = 0.1\noutput = 0.4\n'
    )
    async with ProviderServer() as baseline, ProviderServer() as candidate:
        process = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "shadow", "replay", trace_file(tmp_path), "--config",
              str(config), "--baseline", baseline.url, "--candidate", candidate.url,
              "--speed", "1000", "--out", str(tmp_path / "run.duckdb"), "--json"],
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "GEMINI_KEY": "gemini-own-key"},
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    summary = json.loads(stdout.decode().strip().splitlines()[-1])
    assert summary["skipped_untranslatable"] == 2
    assert summary["arms"]["candidate"]["ok"] == len(SENT)
    assert {a.headers["x-goog-api-key"] for a in candidate.arrivals} == {"gemini-own-key"}
    rows = results(tmp_path / "run.duckdb")
    assert all(rows[name, "candidate"]["cost_usd"] > 0 for name in SENT)
