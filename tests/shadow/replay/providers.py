"""A real HTTP server on 127.0.0.1 that answers as OpenAI, Anthropic and Gemini document.

``/v1/chat/completions`` answers a chat completion (JSON, or SSE with the ``include_usage``
chunk); ``/v1/messages`` an Anthropic message (JSON, or the ``message_start`` ...
``message_stop`` events, usage with cache reads and writes);
``/v1beta/models/{m}:generateContent`` and ``:streamGenerateContent?alt=sse`` a Gemini
``GenerateContentResponse`` (JSON, or one per ``data:`` event, CRLF-separated as Google sends
them, a thought first). A stream waits :data:`FIRST_TOKEN_S` after its first event, so a TTFT
measured at ``message_start`` (or at a thought) would show. Every request is kept as it
arrived (:class:`Arrival`).
"""

from __future__ import annotations

import asyncio
import json
from types import TracebackType
from typing import Any

from aiohttp import web

from tests.shadow.replay.recorder import Arrival

__all__ = ["ANSWER", "FIRST_TOKEN_S", "USAGE", "ProviderServer"]

ANSWER = ("Paris ", "is the ", "capital.")
"""The answer's text, in the pieces a stream sends."""
FIRST_TOKEN_S = 0.05
USAGE: dict[str, dict[str, int]] = {
    "openai": {"prompt": 30, "cached": 10, "completion": 7},
    "anthropic": {"input": 5, "read": 200, "write": 100, "output": 7},
    "gemini": {"prompt": 305, "cached": 200, "candidates": 7, "thoughts": 3},
}


class ProviderServer:
    """``async with ProviderServer() as server``: ``server.url``, then ``server.arrivals``."""

    def __init__(self) -> None:
        self.arrivals: list[Arrival] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.arrivals.append(
            Arrival(
                method=request.method,
                target=request.raw_path,
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
            )
        )
        document: dict[str, Any] = json.loads(body)
        path = request.path
        if path == "/v1/chat/completions":
            model = str(document["model"])
            if document.get("stream"):
                return await self._stream(request, _openai_events(model), "\n")
            return web.json_response(_openai_json(model))
        if path == "/v1/messages":
            model = str(document["model"])
            if document.get("stream"):
                return await self._stream(request, _anthropic_events(model), "\n")
            return web.json_response(_anthropic_json(model))
        model, _, method = path.removeprefix("/v1beta/models/").partition(":")
        if method == "streamGenerateContent" and request.query.get("alt") == "sse":
            return await self._stream(request, _gemini_events(model), "\r\n")
        if method == "generateContent":
            return web.json_response(_gemini_chunk(model, "".join(ANSWER), final=True))
        return web.json_response({"error": "unknown route"}, status=404)

    async def _stream(
        self, request: web.Request, events: list[tuple[str | None, object]], newline: str
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for n, (name, data) in enumerate(events):
            payload = data if isinstance(data, str) else json.dumps(data)
            text = (f"event: {name}{newline}" if name else "") + f"data: {payload}{newline}"
            await response.write((text + newline).encode())
            if n == 0:
                await asyncio.sleep(FIRST_TOKEN_S)  # the model "thinks" after its first event
        await response.write_eof()
        return response

    async def __aenter__(self) -> ProviderServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _openai_usage() -> dict[str, Any]:
    u = USAGE["openai"]
    return {
        "prompt_tokens": u["prompt"],
        "completion_tokens": u["completion"],
        "total_tokens": u["prompt"] + u["completion"],
        "prompt_tokens_details": {"cached_tokens": u["cached"]},
    }


def _openai_json(model: str) -> dict[str, Any]:
    message = {"role": "assistant", "content": "".join(ANSWER)}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": _openai_usage(),
    }


def _openai_events(model: str) -> list[tuple[str | None, object]]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {"id": "c", "object": "chat.completion.chunk", "model": model, "choices": [choice]}

    events: list[tuple[str | None, object]] = [(None, chunk({"role": "assistant"}))]
    events += [(None, chunk({"content": piece})) for piece in ANSWER]
    events.append((None, chunk({}, "stop")))
    events.append((None, {"id": "c", "model": model, "choices": [], "usage": _openai_usage()}))
    events.append((None, "[DONE]"))
    return events


def _anthropic_usage(output: int) -> dict[str, int]:
    u = USAGE["anthropic"]
    return {
        "input_tokens": u["input"],
        "cache_creation_input_tokens": u["write"],
        "cache_read_input_tokens": u["read"],
        "output_tokens": output,
    }


def _anthropic_json(model: str) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": "".join(ANSWER)}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": _anthropic_usage(USAGE["anthropic"]["output"]),
    }


def _anthropic_events(model: str) -> list[tuple[str | None, object]]:
    start = {**_anthropic_json(model), "content": [], "stop_reason": None}
    start["usage"] = _anthropic_usage(1)
    events: list[tuple[str | None, object]] = [
        ("message_start", {"type": "message_start", "message": start}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        ("ping", {"type": "ping"}),
    ]
    for piece in ANSWER:
        delta = {"type": "text_delta", "text": piece}
        events.append(
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        )
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": USAGE["anthropic"]["output"]},  # cumulative
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return events


def _gemini_chunk(model: str, text: str, *, final: bool) -> dict[str, Any]:
    u = USAGE["gemini"]
    candidate: dict[str, Any] = {
        "content": {"role": "model", "parts": [{"text": text}]},
        "index": 0,
    }
    chunk: dict[str, Any] = {"candidates": [candidate], "modelVersion": f"{model}-001"}
    if final:
        candidate["finishReason"] = "STOP"
        chunk["usageMetadata"] = {
            "promptTokenCount": u["prompt"],
            "cachedContentTokenCount": u["cached"],
            "candidatesTokenCount": u["candidates"],
            "thoughtsTokenCount": u["thoughts"],
            "totalTokenCount": u["prompt"] + u["candidates"] + u["thoughts"],
        }
    return chunk


def _gemini_events(model: str) -> list[tuple[str | None, object]]:
    thought = _gemini_chunk(model, "The user asks about France.", final=False)
    thought["candidates"][0]["content"]["parts"][0]["thought"] = True  # a thought: not content
    last = len(ANSWER) - 1
    chunks = [(None, _gemini_chunk(model, p, final=n == last)) for n, p in enumerate(ANSWER)]
    return [(None, thought), *chunks]
