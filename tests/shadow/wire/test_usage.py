"""shadow.wire.usage: reported usage in both namings, estimates when absent, output text."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
import pytest

from shadow.sim import MockLLMServer
from shadow.trace.record import Usage
from shadow.wire.sse import StreamSummary, reassemble
from shadow.wire.tokens import count_tokens
from shadow.wire.usage import extract_usage, output_text


def js(value: object) -> bytes:
    """JSON-encode a body."""
    return msgspec.json.encode(value)


CHAT_REQUEST = js(
    {
        "model": "gpt-requested",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "sum these two numbers"}]},
        ],
    }
)
PROMPT_TOKENS = 3 + 4  # "You are terse." + "sum these two numbers"


def chat_response(content: object, usage: dict[str, Any] | None = None, **extra: Any) -> bytes:
    """A chat.completion body, with usage when given."""
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-served-2024",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, **extra},
                "finish_reason": "stop",
            }
        ],
    }
    if usage is not None:
        body["usage"] = usage
    return js(body)


def test_chat_usage_is_read_with_cached_tokens() -> None:
    """Chat Completions usage, including prompt_tokens_details.cached_tokens, is taken as is."""
    usage = {
        "prompt_tokens": 120,
        "completion_tokens": 30,
        "total_tokens": 150,
        "prompt_tokens_details": {"cached_tokens": 64},
    }
    result = extract_usage(CHAT_REQUEST, chat_response("7", usage), None, 200)
    assert result == Usage(
        model="gpt-served-2024", prompt_tokens=120, completion_tokens=30, cached_tokens=64
    )


def test_responses_api_usage_names_are_read() -> None:
    """input_tokens / output_tokens / input_tokens_details.cached_tokens map to the same fields."""
    body = {
        "object": "response",
        "model": "gpt-resp",
        "output": [{"type": "message", "content": [{"type": "output_text", "text": "ok"}]}],
        "usage": {
            "input_tokens": 50,
            "output_tokens": 5,
            "input_tokens_details": {"cached_tokens": 10},
        },
    }
    result = extract_usage(js({"model": "x", "input": "hi"}), js(body), None, 200)
    assert result == Usage(
        model="gpt-resp", prompt_tokens=50, completion_tokens=5, cached_tokens=10
    )


def test_embeddings_usage_has_no_completion_tokens() -> None:
    """An embeddings response reports prompt tokens only, and that is not an estimate."""
    body = {"object": "list", "data": [], "model": "emb", "usage": {"prompt_tokens": 8}}
    result = extract_usage(js({"model": "emb", "input": "a b"}), js(body), None, 200)
    assert result == Usage(model="emb", prompt_tokens=8)


def test_stream_usage_chunk_is_used() -> None:
    """A stream's final usage chunk gives the counts; the stream's model wins over the request's."""
    usage = {
        "prompt_tokens": 11,
        "completion_tokens": 2,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    stream = StreamSummary(text="a b", usage=usage, model="gpt-streamed", events=4, done=True)
    result = extract_usage(CHAT_REQUEST, b"", stream, 200)
    assert result == Usage(
        model="gpt-streamed", prompt_tokens=11, completion_tokens=2, cached_tokens=0
    )


def test_stream_without_usage_is_estimated() -> None:
    """Without include_usage the counts follow shadow.wire.tokens and are flagged as estimated."""
    stream = StreamSummary(
        text="the sum is 7",
        tool_calls=[{"name": "add", "arguments": '{"a": 3, "b": 4}'}],
        events=6,
        done=True,
    )
    result = extract_usage(CHAT_REQUEST, None, stream, 200)
    assert result == Usage(
        model="gpt-requested",
        prompt_tokens=PROMPT_TOKENS,
        completion_tokens=4 + 1 + 4,  # content, tool name, arguments
        estimated=True,
    )


def test_non_openai_completion_without_usage_is_estimated() -> None:
    """A 2xx chat-shaped body without usage gets estimated counts and the served model."""
    result = extract_usage(CHAT_REQUEST, chat_response("it is seven"), None, 200)
    assert result == Usage(
        model="gpt-served-2024",
        prompt_tokens=PROMPT_TOKENS,
        completion_tokens=3,
        estimated=True,
    )


def test_tool_calls_count_towards_the_estimate() -> None:
    """A tool-call-only answer (content null) is estimated from the call's name and arguments."""
    calls = [{"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{} {}"}}]
    result = extract_usage(CHAT_REQUEST, chat_response(None, tool_calls=calls), None, 200)
    assert result is not None
    assert (result.completion_tokens, result.estimated) == (3, True)


def test_legacy_and_responses_requests_are_estimated_too() -> None:
    """The prompt of a completions request and the input of a Responses request are counted."""
    legacy = js({"model": "m", "prompt": "def f ( x"})
    response = js({"choices": [{"index": 0, "text": "return x"}]})
    assert extract_usage(legacy, response, None, 200) == Usage(
        model="m", prompt_tokens=4, completion_tokens=2, estimated=True
    )
    request = js(
        {
            "model": "r",
            "instructions": "be brief",
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "one two"}]}],
        }
    )
    body = js({"output": [{"type": "message", "content": [{"type": "output_text", "text": "x"}]}]})
    assert extract_usage(request, body, None, 200) == Usage(
        model="r", prompt_tokens=4, completion_tokens=1, estimated=True
    )


def test_non_2xx_keeps_only_the_requested_model() -> None:
    """An error response carries no usage: the requested model, or None when there is none."""
    error = js({"error": {"message": "slow down", "type": "rate_limit_exceeded"}})
    assert extract_usage(CHAT_REQUEST, error, None, 429) == Usage(model="gpt-requested")
    assert extract_usage(js({"messages": []}), error, None, 500) is None
    stream = StreamSummary(text="partial", events=3)
    assert extract_usage(CHAT_REQUEST, None, stream, 503) == Usage(model="gpt-requested")


def test_non_json_response_keeps_only_the_requested_model() -> None:
    """A 2xx body that is not JSON (HTML, truncated) yields the requested model only."""
    assert extract_usage(CHAT_REQUEST, b"<html>ok</html>", None, 200) == Usage(
        model="gpt-requested"
    )
    assert extract_usage(CHAT_REQUEST, chat_response("x")[:-5], None, 200) == Usage(
        model="gpt-requested"
    )
    assert extract_usage(b"not json", b"not json either", None, 200) is None


def test_json_that_is_not_a_completion_is_not_estimated() -> None:
    """A 2xx JSON body of another kind (a model list) gets no invented token counts."""
    models = js({"object": "list", "data": [{"id": "m1"}]})
    assert extract_usage(b"", models, None, 200) is None
    assert extract_usage(CHAT_REQUEST, models, None, 200) == Usage(model="gpt-requested")
    assert extract_usage(CHAT_REQUEST, None, StreamSummary(), 200) == Usage(model="gpt-requested")


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": -1, "completion_tokens": "2"},
        {"prompt_tokens": True, "completion_tokens": None},
        {},
        {"prompt_tokens_details": {"cached_tokens": 3}},
    ],
)
def test_unreadable_usage_falls_back_to_an_estimate(usage: dict[str, Any]) -> None:
    """Negative, non-integer or missing counts are not trusted: the counts are estimated."""
    result = extract_usage(CHAT_REQUEST, chat_response("a b c", usage), None, 200)
    assert result is not None
    assert (result.prompt_tokens, result.completion_tokens, result.estimated) == (
        PROMPT_TOKENS,
        3,
        True,
    )


def test_partly_readable_usage_keeps_what_it_can() -> None:
    """A bad cached count is dropped while the good counts stay reported, not estimated."""
    usage = {
        "prompt_tokens": 5,
        "completion_tokens": 1,
        "prompt_tokens_details": {"cached_tokens": -2},
    }
    result = extract_usage(CHAT_REQUEST, chat_response("a", usage), None, 200)
    assert result == Usage(model="gpt-served-2024", prompt_tokens=5, completion_tokens=1)


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\xff\xfe", b"[" * 100_000, b"null", b"[1, 2]", b'{"choices": 5, "usage": 3}'],
)
def test_garbage_never_raises(garbage: bytes) -> None:
    """Any bytes in either body give a result or None, never an exception."""
    extract_usage(garbage, garbage, None, 200)
    extract_usage(garbage, garbage, None, 404)
    output_text(garbage, None)


def test_output_text_of_each_format() -> None:
    """Chat content, legacy text, Responses output parts and a stream's text are all read."""
    assert output_text(chat_response("hello"), None) == "hello"
    assert output_text(chat_response(None), None) is None
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert output_text(chat_response(parts), None) == "ab"
    assert output_text(js({"choices": [{"index": 0, "text": "legacy"}]}), None) == "legacy"
    responses = {
        "output": [
            {"type": "reasoning", "content": [{"type": "reasoning_text", "text": "hmm"}]},
            {"type": "message", "content": [{"type": "output_text", "text": "one "}]},
            {"type": "message", "content": [{"type": "output_text", "text": "two"}]},
        ]
    }
    assert output_text(js(responses), None) == "one two"
    assert output_text(b"ignored", StreamSummary(text="streamed")) == "streamed"
    assert output_text(js({"error": {"message": "no"}}), None) is None
    assert output_text(b"<html>", None) is None


def test_estimates_match_mock_llm_reported_usage(mock_large: MockLLMServer) -> None:
    """mock-llm counts tokens by the same rule, so a stream without usage is estimated exactly."""
    request = {
        "model": "shadow-large",
        "messages": [
            {"role": "system", "content": "answer in code"},
            {"role": "user", "content": "write a parser for the config file format"},
        ],
        "temperature": 0,
    }
    reply = httpx.post(mock_large.url + "/v1/chat/completions", json=request, timeout=30)
    reported = extract_usage(js(request), reply.content, None, reply.status_code)
    assert reported is not None
    assert reported.estimated is False
    assert reported.prompt_tokens == reply.json()["usage"]["prompt_tokens"]

    with (
        httpx.Client(base_url=mock_large.url, timeout=30) as client,
        client.stream("POST", "/v1/chat/completions", json={**request, "stream": True}) as streamed,
    ):
        chunks = [(0.0, raw) for raw in streamed.iter_raw()]
    stream = reassemble(chunks)
    estimated = extract_usage(js(request), None, stream, streamed.status_code)
    assert estimated == Usage(
        model=reported.model,
        prompt_tokens=reported.prompt_tokens,
        completion_tokens=reported.completion_tokens,
        cached_tokens=None,
        estimated=True,
    )
    assert output_text(reply.content, None) == output_text(b"", stream)
    assert count_tokens(stream.text) == reported.completion_tokens


def test_tool_calls_become_a_json_output_with_names_and_parsed_arguments() -> None:
    """Chat, streamed and Responses API tool calls give the same JSON output document."""
    chat = js(
        {
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "content": None,
                        "tool_calls": [
                            {"function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
                        ],
                    },
                }
            ]
        }
    )
    streamed = StreamSummary(
        text="", tool_calls=[{"name": "get_weather", "arguments": '{"city": "Oslo"}'}]
    )
    responses = js(
        {
            "output": [
                {"type": "function_call", "name": "get_weather", "arguments": '{"city":"Oslo"}'}
            ]
        }
    )
    want = {"content": None, "tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}
    assert msgspec.json.decode(output_text(chat, None) or "") == want
    assert msgspec.json.decode(output_text(responses, None) or "") == want
    assert msgspec.json.decode(output_text(b"", streamed) or "") == {**want, "content": ""}
    broken = StreamSummary(text="", tool_calls=[{"name": "f", "arguments": "{not json"}])
    assert msgspec.json.decode(output_text(b"", broken) or "")["tool_calls"][0]["arguments"] == (
        "{not json"
    )
