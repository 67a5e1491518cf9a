"""Every wire format captured through a real sidecar: the real ``openai`` and ``anthropic`` SDKs
(and Gemini's documented JSON and SSE shapes over httpx) in front of an upstream that answers in
each API's shapes. Records carry the answer text, tool calls, TTFT to the first content token,
chunk offsets and usage under the one convention (cache reads and writes included)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from shadow.config import ModelPrice
from shadow.replay.pricing import PricingTable
from shadow.serving import BackgroundServer
from shadow.trace.record import TraceRecord, Usage
from tests.capture.conftest import RunningSidecar
from tests.capture.wire_upstream import FIRST_TOKEN_DELAY_S, WireUpstream

pytestmark = pytest.mark.timeout(60)

DELAY_MS = FIRST_TOKEN_DELAY_S * 1000.0
TOOLS: Any = [
    {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
]


@pytest.fixture(scope="module")
def upstream() -> Iterator[BackgroundServer]:
    with BackgroundServer(WireUpstream(), timeout_graceful_shutdown=1) as server:
        yield server


@pytest.fixture
def records(
    upstream: BackgroundServer, make_sidecar: Callable[..., RunningSidecar]
) -> Callable[[Callable[[str], None]], dict[str, TraceRecord]]:
    """Run ``traffic(sidecar_url)``, stop the sidecar, and return its records by x-test-id."""

    def run(traffic: Callable[[str], None]) -> dict[str, TraceRecord]:
        sidecar = make_sidecar(upstream.url)
        traffic(sidecar.url)
        sidecar.stop()
        return {r.request.headers["x-test-id"]: r for r in sidecar.records()}

    return run


def _id(name: str) -> dict[str, str]:
    return {"x-test-id": name}


def _streamed_after_the_gap(record: TraceRecord) -> None:
    """TTFT is the first content chunk's offset, and that came after the opening event's gap."""
    assert record.response is not None
    assert record.response.stream
    offsets = record.response.chunk_offsets_ms or []
    assert offsets
    assert record.timing.ttft_ms == offsets[0]
    # after the gap, not at the opening event (~0 ms); half the gap leaves room for clock noise
    assert record.timing.ttft_ms >= DELAY_MS / 2
    assert offsets == sorted(offsets)


def test_openai_sdk_chat_responses_and_embeddings(records: Any) -> None:
    def traffic(url: str) -> None:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-test", max_retries=0)
        messages: Any = [{"role": "user", "content": "capital of France?"}]
        reply = client.chat.completions.create(
            model="gpt-4o", messages=messages, extra_headers=_id("chat")
        )
        assert reply.choices[0].message.content == "Paris is the capital."
        pieces = client.chat.completions.create(
            model="gpt-4o",
            messages=messages,
            tools=TOOLS,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=_id("chat-stream"),
        )
        assert "".join(c.choices[0].delta.content or "" for c in pieces if c.choices) == (
            "Looking it up."
        )
        response = client.responses.create(model="gpt-4.1", input="hi", extra_headers=_id("resp"))
        assert response.output_text == "Hello there."
        events = client.responses.create(
            model="gpt-4.1", input="hi", stream=True, extra_headers=_id("resp-stream")
        )
        assert [e.type for e in events][-1] == "response.completed"
        embedded = client.embeddings.create(
            model="text-embedding-3-small", input="a b c", extra_headers=_id("emb")
        )
        assert embedded.data[0].embedding == [0.1, 0.2, 0.3]

    got = records(traffic)
    chat = got["chat"]
    assert chat.response is not None
    assert chat.response.body is not None
    assert json.loads(chat.response.body)["choices"][0]["message"]["content"] == (
        "Paris is the capital."
    )
    assert chat.usage == Usage(
        model="gpt-4o-2024-08-06",
        prompt_tokens=30,
        completion_tokens=5,
        cached_tokens=16,
        reasoning_tokens=0,
    )
    streamed = got["chat-stream"]
    _streamed_after_the_gap(streamed)
    assert streamed.response is not None
    assert len(streamed.response.chunk_offsets_ms or []) == 2  # the role-only chunk is not content
    assert json.loads(streamed.response.body or "") == {
        "content": "Looking it up.",
        "tool_calls": [{"name": "lookup", "arguments": {"q": "x"}}],
    }
    assert streamed.usage == Usage(model="gpt-4o-2024-08-06", prompt_tokens=20, completion_tokens=9)
    resp_stream = got["resp-stream"]
    _streamed_after_the_gap(resp_stream)
    assert resp_stream.response is not None
    assert resp_stream.response.body == "Hello there."
    want = Usage(
        model="gpt-4.1-2025-04-14",
        prompt_tokens=11,
        completion_tokens=3,
        cached_tokens=0,
        reasoning_tokens=0,
    )
    assert got["resp"].usage == resp_stream.usage == want
    assert got["emb"].usage == Usage(model="text-embedding-3-small", prompt_tokens=5)


def test_anthropic_sdk_messages_with_cache_usage_and_cache_prices(records: Any) -> None:
    tools: Any = [{"name": "get_weather", "input_schema": {"type": "object"}}]

    def traffic(url: str) -> None:
        client = anthropic.Anthropic(base_url=url, api_key="sk-ant-test", max_retries=0)
        kwargs: Any = {
            "model": "claude-3-5-haiku-latest",
            "max_tokens": 100,
            "system": [
                {"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}
            ],
            "messages": [{"role": "user", "content": "weather in Paris?"}],
            "tools": tools,
        }
        message = client.messages.create(**kwargs, extra_headers=_id("whole"))
        assert message.usage.cache_read_input_tokens == 2000
        with client.messages.stream(**kwargs, extra_headers=_id("stream")) as stream:
            final = stream.get_final_message()
        assert [b.type for b in final.content] == ["text", "tool_use"]
        assert final.usage.output_tokens == 25

    got = records(traffic)
    want = Usage(
        model="claude-3-5-haiku-20241022",
        prompt_tokens=12 + 2000 + 300,  # all input, as OpenAI counts it
        completion_tokens=25,  # message_delta's cumulative count replaces message_start's 1
        cached_tokens=2000,
        cache_write_tokens=300,
    )
    assert got["whole"].usage == got["stream"].usage == want
    streamed = got["stream"]
    _streamed_after_the_gap(streamed)  # not message_start, not content_block_start
    assert streamed.response is not None
    assert len(streamed.response.chunk_offsets_ms or []) == 2
    assert json.loads(streamed.response.body or "") == {
        "content": "Checking the weather.",
        "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}],
    }
    # cost with cache prices (USD per million: input 0.80, cache read 0.08, cache write 1.00)
    table = PricingTable(
        {
            "claude-3-5-haiku": ModelPrice(
                input=0.80, output=4.00, cached_input=0.08, cache_write_input=1.00
            )
        }
    )
    usage = streamed.usage
    assert usage is not None
    cost = table.cost(
        usage.model,
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.cached_tokens,
        usage.cache_write_tokens,
    )
    assert cost == pytest.approx((12 * 0.80 + 2000 * 0.08 + 300 * 1.00 + 25 * 4.00) / 1e6)


def test_gemini_generate_content_and_sse_stream(records: Any) -> None:
    body = {
        "systemInstruction": {"parts": [{"text": "translate"}]},
        "contents": [{"role": "user", "parts": [{"text": "hello world"}]}],
    }

    def traffic(url: str) -> None:
        headers = {"x-goog-api-key": "g-test"}
        with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
            model = "/v1beta/models/gemini-2.5-flash"
            whole = client.post(f"{model}:generateContent", json=body, headers=_id("whole"))
            assert whole.status_code == 200
            with client.stream(
                "POST",
                f"{model}:streamGenerateContent",
                params={"alt": "sse"},
                json=body,
                headers=_id("stream"),
            ) as streamed:
                assert streamed.headers["content-type"].startswith("text/event-stream")
                streamed.read()

    got = records(traffic)
    want = Usage(
        model="gemini-2.5-flash",
        prompt_tokens=40,
        completion_tokens=6 + 4,  # candidates + thoughts, as OpenAI counts reasoning
        cached_tokens=32,
        reasoning_tokens=4,
    )
    assert got["whole"].usage == got["stream"].usage == want
    streamed = got["stream"]
    _streamed_after_the_gap(streamed)  # the thought part is not content
    assert streamed.response is not None
    assert len(streamed.response.chunk_offsets_ms or []) == 2
    assert json.loads(streamed.response.body or "") == {
        "content": "Bonjour, monde.",
        "tool_calls": [{"name": "translate", "arguments": {"to": "fr"}}],
    }
