"""Request features as slices: a real sidecar on 127.0.0.1 in front of a real upstream.

The upstream answers each API in its documented shape (OpenAI Chat and Responses, Anthropic
Messages, Gemini generateContent), with or without tool calls, so the features are read from
what really crossed the wire.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from capture.live.serve import LiveServer
from capture.sidecar import Sidecar
from capture.sinks import FileSink
from shadow.config import CaptureConfig, SliceRule
from shadow.serving import BackgroundServer
from shadow.trace.jsonl import read_jsonl
from shadow.trace.record import TraceRecord
from shadow.wire.features import prompt_size_bucket, request_features, turns_bucket

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]


def _answer(path: str, body: dict[str, Any]) -> tuple[str, bytes]:
    """(content type, body) of the upstream's answer to ``body`` on ``path``."""
    calls = bool(body.get("tools")) and body.get("call", True)
    chat = path.endswith("/chat/completions")  # OpenAI's and Azure's
    if chat and body.get("stream"):
        events = [
            {"choices": [{"index": 0, "delta": {"role": "assistant"}}]},
            {"choices": [{"index": 0, "delta": {"content": "hi"}}]},
            {"choices": [], "usage": {"prompt_tokens": 300, "completion_tokens": 1}},
        ]
        text = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        return "text/event-stream", text.encode()
    if chat:
        message: dict[str, Any] = {"role": "assistant", "content": None if calls else "hi"}
        if calls:
            message["tool_calls"] = [
                {"id": "c1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{}"}}
            ]  # fmt: skip
        answer: dict[str, Any] = {
            "choices": [{"index": 0, "message": message}],
            "usage": {"prompt_tokens": 5000, "completion_tokens": 3},
        }
    elif path == "/v1/responses":
        item = {"type": "function_call", "name": "f", "arguments": "{}"}
        answer = {"output": [item] if calls else [], "usage": {"input_tokens": 20}}
    elif path == "/v1/messages":
        block = {"type": "tool_use", "id": "t1", "name": "f", "input": {}}
        said = {"type": "text", "text": "hi"}
        answer = {"content": [block if calls else said], "usage": {"input_tokens": 70}}
    else:  # Gemini
        part = {"functionCall": {"name": "f", "args": {}}} if calls else {"text": "hi"}
        answer = {
            "candidates": [{"content": {"role": "model", "parts": [part]}}],
            "usageMetadata": {"promptTokenCount": 12},
        }
    return "application/json", json.dumps(answer).encode()


async def upstream(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI upstream answering each API in its documented shape."""
    if scope["type"] != "http":
        return
    raw = b""
    while True:
        message = await receive()
        raw += message.get("body", b"")
        if not message.get("more_body"):
            break
    content_type, body = _answer(scope["path"], json.loads(raw or b"{}"))
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", content_type.encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


Capture = Callable[..., list[TraceRecord]]


@pytest.fixture
def capture(tmp_path: Path) -> Iterator[Capture]:
    """Send requests through a real sidecar to the upstream; the records it wrote, in order."""
    servers: list[BackgroundServer | LiveServer] = []
    origin = BackgroundServer(upstream, timeout_graceful_shutdown=1)
    origin.start()
    servers.append(origin)

    def run(
        requests: list[tuple[str, dict[str, Any], dict[str, str]]],
        *,
        rules: tuple[SliceRule, ...] = (),
        features: bool = True,
    ) -> list[TraceRecord]:
        out = tmp_path / f"records-{len(servers)}.jsonl"
        config = CaptureConfig(
            upstream=origin.url,
            spool_dir=str(tmp_path / f"spool-{len(servers)}"),
            request_features=features,
        )
        server = LiveServer(Sidecar(capture=config, sink=FileSink(out), slices=rules))
        server.start()
        servers.append(server)
        with httpx.Client(timeout=10) as http:
            for path, body, headers in requests:
                assert http.post(server.url + path, json=body, headers=headers).status_code == 200
        server.stop()  # stopping drains the tee into the file
        return list(read_jsonl(out))

    yield run
    for server in reversed(servers):
        server.stop()


def _user(text: str = "hello there") -> dict[str, str]:
    return {"role": "user", "content": text}


def _assistant() -> dict[str, str]:
    return {"role": "assistant", "content": "ok"}


def test_every_format_gets_its_features(capture: Capture) -> None:
    """turns, prompt_size, tools, tool_calls, stream and format for each API's shape."""
    chat = {"model": "m", "messages": [{"role": "system", "content": "be brief"}, _user()]}
    long_chat = {"model": "m", "messages": [_user(), _assistant()] * 5, "tools": TOOLS}
    records = capture(
        [
            ("/v1/chat/completions", chat, {}),
            ("/v1/chat/completions", {**chat, "stream": True}, {}),
            ("/v1/chat/completions", long_chat, {}),
            ("/v1/responses", {"model": "m", "input": "hi", "tools": [{"type": "function"}]}, {}),
            (
                "/v1/messages",
                {
                    "model": "claude",
                    "max_tokens": 5,
                    "system": "s",
                    "tools": [{"name": "f", "input_schema": {}}],
                    "messages": [
                        _user(),
                        {"role": "assistant", "content": [{"type": "tool_use", "id": "t"}]},
                        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]},
                        _user(),
                    ],
                },
                {},
            ),
            (
                "/v1beta/models/gemini-2.0-flash:generateContent",
                {
                    "contents": [
                        {"parts": [{"text": "hi"}]},
                        {"role": "model", "parts": []},
                        {"role": "user", "parts": [{"text": "again"}]},
                    ]
                },
                {},
            ),
            ("/openai/deployments/gpt4o/chat/completions?api-version=2024-06-01", chat, {}),
        ]
    )
    features = [
        {k: r.slices.get(k) for k in ("turns", "prompt_size", "tools", "tool_calls", "stream",
                                       "format")}
        for r in records
    ]  # fmt: skip
    assert features == [
        # reported usage sizes the prompt: 5000 tokens; no tools, so no tool calls
        {"turns": "1", "prompt_size": "4k-16k", "tools": "no", "tool_calls": "no",
         "stream": "no", "format": "openai"},
        {"turns": "1", "prompt_size": "256-1k", "tools": "no", "tool_calls": "no",
         "stream": "yes", "format": "openai"},
        {"turns": "4-9", "prompt_size": "4k-16k", "tools": "yes", "tool_calls": "yes",
         "stream": "no", "format": "openai"},
        {"turns": "1", "prompt_size": "<256", "tools": "yes", "tool_calls": "yes",
         "stream": "no", "format": "openai"},
        # a user message of tool results only is not a turn
        {"turns": "2-3", "prompt_size": "<256", "tools": "yes", "tool_calls": "yes",
         "stream": "no", "format": "anthropic"},
        # a Gemini content without a role is the user's
        {"turns": "2-3", "prompt_size": "<256", "tools": "no", "tool_calls": "no",
         "stream": "no", "format": "gemini"},
        {"turns": "1", "prompt_size": "4k-16k", "tools": "no", "tool_calls": "no",
         "stream": "no", "format": "azure"},
    ]  # fmt: skip
    # the default rules still apply beside them
    assert records[0].slices["model"] == "m"


def test_an_answer_without_tool_calls_says_no(capture: Capture) -> None:
    """Tools defined but not called: tools yes, tool_calls no."""
    body = {"model": "m", "messages": [_user()], "tools": TOOLS, "call": False}
    (record,) = capture([("/v1/chat/completions", body, {})])
    assert (record.slices["tools"], record.slices["tool_calls"]) == ("yes", "no")


def test_explicit_slices_win_and_a_setting_turns_the_features_off(capture: Capture) -> None:
    """A [[slices]] rule (here a header) named like a feature keeps its value; off: no features."""
    rules = (SliceRule(name="format", header="x-format"), SliceRule(name="team", header="x-team"))
    body = {"model": "m", "messages": [_user()]}
    (ruled,) = capture(
        [("/v1/chat/completions", body, {"x-format": "house", "x-team": "search"})], rules=rules
    )
    assert ruled.slices["format"] == "house"
    assert ruled.slices["team"] == "search"
    assert ruled.slices["turns"] == "1"
    (plain,) = capture([("/v1/chat/completions", body, {"x-tenant": "acme"})], features=False)
    assert plain.slices == {"tenant": "acme", "model": "m"}


@pytest.mark.parametrize(
    ("tokens", "label"),
    [(0, "<256"), (255, "<256"), (256, "256-1k"), (1023, "256-1k"), (1024, "1k-4k"),
     (4096, "4k-16k"), (16383, "4k-16k"), (16384, "16k-64k"), (65536, "64k+")],
)  # fmt: skip
def test_prompt_size_buckets(tokens: int, label: str) -> None:
    assert prompt_size_bucket(tokens) == label


@pytest.mark.parametrize(
    ("turns", "label"), [(0, "0"), (1, "1"), (2, "2-3"), (3, "2-3"), (4, "4-9"), (9, "4-9"),
                         (10, "10+"), (250, "10+")]
)  # fmt: skip
def test_turn_buckets(turns: int, label: str) -> None:
    assert turns_bucket(turns) == label


def test_features_never_raise_and_estimate_the_prompt() -> None:
    """Without usage the prompt is sized by the token rule; junk bodies give plain defaults."""
    words = " ".join(["w"] * 300)
    assert (
        request_features("/v1/messages", {"system": words, "messages": [_user()]})["prompt_size"]
        == "256-1k"
    )
    assert request_features("/v1/embeddings", {"input": ["a", "b"]}) == {
        "prompt_size": "<256", "tools": "no", "tool_calls": "no", "stream": "no",
        "format": "openai",
    }  # fmt: skip
    junks: list[object] = [None, [], "text", {"messages": "nope", "tools": {}, "contents": 3}]
    for junk in junks:
        assert request_features("/v1/chat/completions", junk)["turns"] == "0"
    stream = request_features("/v1beta/models/g:streamGenerateContent", {"contents": []})
    assert (stream["stream"], stream["format"]) == ("yes", "gemini")
