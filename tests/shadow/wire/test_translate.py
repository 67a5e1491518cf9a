"""OpenAI Chat requests as Anthropic and Gemini ones; any API's answer in the common form."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shadow.wire.translate import (
    ANTHROPIC_MAX_TOKENS,
    Untranslatable,
    read_answer,
    translate_request,
)

CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CONVERSATION: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather here?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
            ],
        },
        {"role": "assistant", "content": "Checking.", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 18}'},
        {"role": "user", "content": "Thanks"},
    ],
    "tools": [TOOL],
    "tool_choice": "required",
    "temperature": 0.5,
    "top_p": 0.9,
    "stop": "END",
    "max_completion_tokens": 300,
    "user": "u-1",
    "stream_options": {"include_usage": True},
}


def test_a_conversation_with_tools_as_an_anthropic_request() -> None:
    out = translate_request(CONVERSATION, "anthropic", model="claude-haiku")
    assert (out.path, out.query, out.stream) == ("/v1/messages", "", False)
    assert out.body == {
        "model": "claude-haiku",
        "max_tokens": 300,
        "system": "Be brief.\n\nUse tools.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather here?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "call_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                ],
            },
            {
                "role": "user",  # the tool result and the next user turn share one turn
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": '{"temp_c": 18}'},
                    {"type": "text", "text": "Thanks"},
                ],
            },
        ],
        "temperature": 0.5,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "tools": [
            {
                "name": "get_weather",
                "description": "Weather in a city",
                "input_schema": TOOL["function"]["parameters"],  # type: ignore[index]
            }
        ],
        "tool_choice": {"type": "any"},
    }


def test_a_conversation_with_tools_as_a_gemini_request() -> None:
    out = translate_request({**CONVERSATION, "stream": True}, "gemini", model="models/gemini-2.0")
    assert out.path == "/v1beta/models/gemini-2.0:streamGenerateContent"
    assert (out.query, out.stream) == ("alt=sse", True)
    assert out.body == {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "Weather here?"},
                    {"inlineData": {"mimeType": "image/png", "data": "iVBORw0K"}},
                ],
            },
            {
                "role": "model",
                "parts": [
                    {"text": "Checking."},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"temp_c": 18}}},
                    {"text": "Thanks"},
                ],
            },
        ],
        "systemInstruction": {"parts": [{"text": "Be brief.\n\nUse tools."}]},
        "generationConfig": {
            "maxOutputTokens": 300,
            "temperature": 0.5,
            "topP": 0.9,
            "stopSequences": ["END"],
        },
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "Weather in a city",
                        "parametersJsonSchema": TOOL["function"]["parameters"],  # type: ignore[index]
                    }
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
    }


def test_defaults_and_small_mappings() -> None:
    plain = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    anthropic = translate_request(plain, "anthropic", model="m").body
    assert anthropic["max_tokens"] == ANTHROPIC_MAX_TOKENS  # required there; the default
    assert anthropic["stream"] is True
    assert anthropic["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    gemini = translate_request({**plain, "stream": False}, "gemini", model="g")
    assert gemini.path == "/v1beta/models/g:generateContent"
    assert gemini.body == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    named = {**plain, "tool_choice": {"type": "function", "function": {"name": "f"}}}
    named["parallel_tool_calls"] = False
    assert translate_request(named, "anthropic", model="m").body["tool_choice"] == {
        "type": "tool",
        "name": "f",
        "disable_parallel_tool_use": True,
    }
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    config = translate_request({**plain, "response_format": schema}, "gemini", model="g").body
    assert config["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object"},
    }


HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("change", "to", "detail"),
    [
        ({"n": 2}, "anthropic", "n > 1"),
        ({"logprobs": True}, "gemini", "logprobs"),
        ({"top_logprobs": 2}, "anthropic", "top_logprobs"),
        ({"response_format": {"type": "json_schema"}}, "anthropic", "response_format json_schema"),
        ({"temperature": 1.5}, "anthropic", "temperature > 1"),
        ({"presence_penalty": 0.5}, "anthropic", "presence_penalty"),
        ({"logit_bias": {"1": 2}}, "gemini", "logit_bias has no gemini equivalent"),
        ({"modalities": ["text", "audio"]}, "anthropic", "modalities"),
        ({"parallel_tool_calls": False}, "gemini", "parallel_tool_calls"),
        ({"messages": []}, "anthropic", "messages is missing"),
        ({"messages": [{"role": "system", "content": "s"}]}, "gemini", "no user or assistant"),
        ({"messages": [*HI, {"role": "system", "content": "s"}]}, "anthropic", "after the first"),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "anthropic",
            "input_audio content part",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": "http://x/i.png"}],
                    }
                ]
            },
            "gemini",
            "image by URL",
        ),
        ({"messages": [{"role": "function", "content": "x"}]}, "anthropic", "function message"),
        (
            {"messages": [*HI, {"role": "tool", "tool_call_id": "nope", "content": "x"}]},
            "gemini",
            "answering no earlier tool call",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{**CALL, "function": {"name": "f", "arguments": "{oops"}}],
                    }
                ]
            },
            "anthropic",
            "not JSON",
        ),
        ({"tools": [{"type": "custom", "custom": {}}]}, "anthropic", "not a function"),
        ({"tool_choice": {"type": "allowed_tools"}}, "gemini", "tool_choice"),
    ],
)
def test_what_cannot_be_translated_whole_is_refused(
    change: dict[str, Any], to: Any, detail: str
) -> None:
    with pytest.raises(Untranslatable) as refused:
        translate_request({"messages": HI, **change}, to, model="m")
    assert detail in refused.value.detail


def sse(*events: tuple[str | None, object], newline: str = "\n") -> bytes:
    out = ""
    for name, data in events:
        out += (f"event: {name}{newline}" if name else "") + f"data: {json.dumps(data)}{newline}"
        out += newline
    return out.encode()


def split(stream: bytes, every: int = 7) -> list[tuple[float, bytes]]:
    """The stream cut into small chunks (boundaries inside lines, CRLFs and characters)."""
    return [(float(n), stream[n : n + every]) for n in range(0, len(stream), every)]


def test_an_anthropic_answer_with_cache_and_a_tool_call() -> None:
    body = {
        "type": "message",
        "model": "claude-haiku-20241022",
        "content": [
            {"type": "thinking", "thinking": "hm"},
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}},
        ],
        "usage": {
            "input_tokens": 10,
            "cache_read_input_tokens": 1000,
            "cache_creation_input_tokens": 200,
            "output_tokens": 30,
        },
    }
    answer = read_answer("anthropic", 200, json.dumps(body).encode())
    assert answer.parsed
    assert answer.model == "claude-haiku-20241022"
    assert (answer.prompt_tokens, answer.cached_tokens, answer.cache_write_tokens) == (
        1210,
        1000,
        200,
    )
    assert answer.completion_tokens == 30
    assert json.loads(answer.output_text or "") == {
        "content": "Let me check.",
        "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}],
    }
    assert answer.ttft_ms is None


def block_start(index: int, block: object) -> tuple[str, object]:
    return "content_block_start", {
        "type": "content_block_start",
        "index": index,
        "content_block": block,
    }


def delta(index: int, value: object) -> tuple[str, object]:
    return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": value}


def test_an_anthropic_stream_in_small_chunks() -> None:
    start = {
        "model": "claude-x",
        "usage": {"input_tokens": 4, "cache_read_input_tokens": 6, "output_tokens": 1},
    }
    text = {"type": "text_delta", "text": "Olá "}
    tool = {"type": "tool_use", "id": "t", "name": "f", "input": {}}
    stream = sse(
        ("message_start", {"type": "message_start", "message": start}),
        block_start(0, {"type": "text", "text": ""}),
        ("ping", {"type": "ping"}),
        delta(0, text),
        block_start(1, tool),
        delta(1, {"type": "input_json_delta", "partial_json": '{"a": '}),
        delta(1, {"type": "input_json_delta", "partial_json": "1}"}),
        ("message_delta", {"type": "message_delta", "usage": {"output_tokens": 12}}),
        ("message_stop", {"type": "message_stop"}),
        newline="\r\n",
    )
    chunks = split(stream)
    answer = read_answer("anthropic", 200, b"", chunks)
    assert answer.parsed
    assert (answer.model, answer.prompt_tokens, answer.cached_tokens) == ("claude-x", 10, 6)
    assert answer.completion_tokens == 12  # message_delta's usage is cumulative
    assert json.loads(answer.output_text or "") == {
        "content": "Olá ",
        "tool_calls": [{"name": "f", "arguments": {"a": 1}}],
    }
    first_text = stream.index(b'"text_delta"')
    arrived = next(offset for offset, chunk in chunks if offset + len(chunk) > first_text)
    assert answer.ttft_ms is not None
    assert answer.ttft_ms > arrived  # after message_start, ping and the empty block start
    assert answer.chunk_offsets_ms is not None
    assert len(answer.chunk_offsets_ms) == 1  # the one text delta: content chunks, as in OpenAI


def test_an_anthropic_stream_error_event_is_not_an_answer() -> None:
    stream = sse(("error", {"type": "error", "error": {"type": "overloaded_error"}}))
    assert not read_answer("anthropic", 200, b"", [(1.0, stream)]).parsed
    assert not read_answer("anthropic", 200, b"", [(1.0, b"data: not json\n\n")]).parsed


def test_a_gemini_answer_and_stream() -> None:
    usage = {
        "promptTokenCount": 120,
        "cachedContentTokenCount": 100,
        "candidatesTokenCount": 8,
        "thoughtsTokenCount": 5,
    }
    parts = [
        {"text": "pondering", "thought": True},
        {"text": "It is sunny."},
        {"functionCall": {"name": "log", "args": {"x": 1}}},
    ]
    whole = {
        "candidates": [{"content": {"role": "model", "parts": parts}}],
        "usageMetadata": usage,
        "modelVersion": "gemini-2.0-flash-001",
    }
    answer = read_answer("gemini", 200, json.dumps(whole).encode(), requested_model="g")
    assert answer.parsed
    assert answer.model == "gemini-2.0-flash-001"
    assert (answer.prompt_tokens, answer.cached_tokens, answer.cache_write_tokens) == (
        120,
        100,
        None,
    )
    assert (answer.completion_tokens, answer.reasoning_tokens) == (13, 5)
    assert json.loads(answer.output_text or "") == {
        "content": "It is sunny.",
        "tool_calls": [{"name": "log", "arguments": {"x": 1}}],
    }
    chunk = {
        "candidates": [{"content": {"parts": [{"text": "It is "}]}}],
        "modelVersion": "gemini-2.0-flash-001",  # a stream's first named model is its model
    }
    thought = {"candidates": [{"content": {"parts": [{"text": "hm", "thought": True}]}}]}
    last = {**whole, "candidates": [{"content": {"parts": [{"text": "sunny."}]}}]}
    stream = sse((None, thought), (None, chunk), (None, last), newline="\r\n")
    chunks = split(stream, 11)
    streamed = read_answer("gemini", 200, b"", chunks)
    assert streamed.parsed
    assert streamed.output_text == "It is sunny."
    assert (streamed.prompt_tokens, streamed.completion_tokens) == (120, 13)
    assert streamed.model == "gemini-2.0-flash-001"
    assert streamed.chunk_offsets_ms is not None
    assert len(streamed.chunk_offsets_ms) == 2
    assert streamed.ttft_ms == streamed.chunk_offsets_ms[0] > 0  # not at the thought


def test_an_error_status_reports_only_the_model_asked_for() -> None:
    answer = read_answer("gemini", 429, b'{"error": {}}', requested_model="gemini-x")
    assert (answer.parsed, answer.model, answer.output_text, answer.prompt_tokens) == (
        False,
        "gemini-x",
        None,
        None,
    )
    openai = read_answer(
        "openai",
        200,
        json.dumps(
            {
                "model": "m",
                "choices": [{"message": {"content": "hi"}}],
                "usage": {"prompt_tokens": 2, "completion_tokens": 1},
            }
        ).encode(),
    )
    assert (openai.parsed, openai.output_text, openai.prompt_tokens) == (True, "hi", 2)
