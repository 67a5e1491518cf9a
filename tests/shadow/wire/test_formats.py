"""The wire formats behind one interface: picked from the path (Azure OpenAI included), what
requests ask, and usage under the one convention."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shadow.trace.record import Usage
from shadow.wire.formats import FORMATS, format_for
from shadow.wire.sse import reassemble
from shadow.wire.usage import extract_usage, output_text


def js(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(
        f"event: {e.get('type', 'x')}\ndata: {json.dumps(e)}\n\n".encode() for e in events
    )


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/v1/chat/completions", "openai_chat"),
        ("/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21", "openai_chat"),
        ("/openai/deployments/d/completions", "openai_completions"),
        ("/openai/deployments/d/embeddings", "openai_embeddings"),
        ("/v1/completions", "openai_completions"),
        ("/v1/responses", "openai_responses"),
        ("/v1/messages", "anthropic"),
        ("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", "gemini"),
        ("/generate", "openai"),
    ],
)
def test_the_path_picks_the_format(path: str, name: str) -> None:
    assert format_for(path).name == name
    assert format_for(None, name).name == name


def test_an_unknown_format_name_is_refused_with_the_names() -> None:
    with pytest.raises(ValueError, match="anthropic, gemini, openai"):
        format_for(fmt="bedrock")  # type: ignore[arg-type]
    assert len(FORMATS) == 7


def test_what_requests_ask_in_each_format() -> None:
    chat = format_for("/v1/chat/completions").request(
        {
            "model": "gpt-4o",
            "stream": True,
            "tools": [{"type": "function"}],
            "messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": "one"},
                {"role": "assistant", "content": "two"},
                {"role": "tool", "content": "result"},
                {"role": "user", "content": [{"type": "text", "text": "three"}]},
            ],
        }
    )
    assert (chat.model, chat.stream, chat.user_turns, chat.tools) == ("gpt-4o", True, 2, True)
    claude = format_for("/v1/messages").request(
        {
            "model": "claude",
            "system": [{"type": "text", "text": "be brief"}],
            "messages": [
                {"role": "user", "content": "hi there"},
                {"role": "assistant", "content": [{"type": "tool_use", "name": "f", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "content": "42"}]},
            ],
        }
    )
    assert (claude.prompt, claude.user_turns, claude.tools) == ("be brief\nhi there\n42", 1, False)
    gemini = format_for("/v1beta/models/gemini-2.5-pro:streamGenerateContent").request(
        {
            "contents": [{"parts": [{"text": "a b"}]}],
            "tools": [{"functionDeclarations": [{"name": "f"}]}],
        },
        "/v1beta/models/gemini-2.5-pro:streamGenerateContent",
    )
    assert (gemini.model, gemini.stream, gemini.user_turns, gemini.tools) == (
        "gemini-2.5-pro",
        True,
        1,
        True,
    )


def test_anthropic_stream_usage_is_merged_and_normalised() -> None:
    """message_start's input usage, message_delta's cumulative output: one convention."""
    start = {"input_tokens": 5, "cache_read_input_tokens": 7, "cache_creation_input_tokens": 3}
    raw = sse(
        {
            "type": "message_start",
            "message": {"model": "claude-x", "usage": {**start, "output_tokens": 1}},
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "hm"},
        },
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ok"}},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 9},
        },
        {"type": "message_stop"},
    )
    stream = reassemble([(0.0, raw[:40]), (3.0, raw[40:])], path="/v1/messages")
    assert (stream.text, stream.ttft_ms, stream.finish_reason, stream.format) == (
        "ok",
        3.0,
        "end_turn",
        "anthropic",
    )
    assert extract_usage(js({"model": "claude"}), None, stream, 200) == Usage(
        model="claude-x",
        prompt_tokens=15,
        completion_tokens=9,
        cached_tokens=7,
        cache_write_tokens=3,
    )
    assert output_text(b"", stream) == "ok"


def test_anthropic_without_usage_is_estimated_from_its_own_shapes() -> None:
    request = js(
        {"model": "claude", "system": "a b", "messages": [{"role": "user", "content": "c"}]}
    )
    body = js({"type": "message", "content": [{"type": "text", "text": "one two"}]})
    assert extract_usage(request, body, None, 200, path="/v1/messages") == Usage(
        model="claude", prompt_tokens=3, completion_tokens=2, estimated=True
    )
    assert output_text(body, None, fmt="anthropic") == "one two"
    assert output_text(body, None) is None  # read as OpenAI, it is not a completion


def test_gemini_usage_convention_and_model_version() -> None:
    body = {
        "candidates": [{"content": {"parts": [{"text": "hm", "thought": True}, {"text": "yes"}]}}],
        "usageMetadata": {
            "promptTokenCount": 100,
            "cachedContentTokenCount": 60,
            "candidatesTokenCount": 2,
            "thoughtsTokenCount": 8,
            "toolUsePromptTokenCount": 5,
        },
        "modelVersion": "gemini-2.5-flash-001",
    }
    path = "/v1beta/models/gemini-2.5-flash:generateContent"
    assert extract_usage(b"{}", js(body), None, 200, path=path) == Usage(
        model="gemini-2.5-flash-001",
        prompt_tokens=105,
        completion_tokens=10,
        cached_tokens=60,
        reasoning_tokens=8,
    )
    assert output_text(js(body), None, path=path) == "yes"
    # the requested model is the path's when the response reports none
    assert extract_usage(b"{}", js({"error": {}}), None, 429, path=path) == Usage(
        model="gemini-2.5-flash"
    )


def test_openai_reasoning_tokens_are_kept() -> None:
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 50,
        "completion_tokens_details": {"reasoning_tokens": 40},
    }
    body = js(
        {"model": "o3", "choices": [{"index": 0, "message": {"content": "x"}}], "usage": usage}
    )
    got = extract_usage(js({"model": "o3"}), body, None, 200, path="/v1/chat/completions")
    assert got == Usage(model="o3", prompt_tokens=10, completion_tokens=50, reasoning_tokens=40)
