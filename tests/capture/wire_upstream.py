"""An upstream that answers in each API's documented JSON and SSE shapes (OpenAI Chat,
Responses and Embeddings; Anthropic Messages with prompt-cache usage; Gemini generateContent
and streamGenerateContent?alt=sse), for capture tests through a real sidecar.

Each stream waits :data:`FIRST_TOKEN_DELAY_S` after its opening event (a role-only chunk,
``message_start``, ``response.created``) before the first content, so a TTFT measured from
that opening event instead of the first content token would be visibly too early.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

__all__ = ["FIRST_TOKEN_DELAY_S", "WireUpstream"]

FIRST_TOKEN_DELAY_S = 0.08

ANTHROPIC_USAGE = {
    "input_tokens": 12,
    "cache_read_input_tokens": 2000,
    "cache_creation_input_tokens": 300,
    "output_tokens": 1,
}
GEMINI_USAGE = {
    "promptTokenCount": 40,
    "cachedContentTokenCount": 32,
    "candidatesTokenCount": 6,
    "thoughtsTokenCount": 4,
    "totalTokenCount": 50,
}


def _sse(obj: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(obj)}\n\n".encode()


class WireUpstream:
    """A raw ASGI app (module docstring)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        request = json.loads(body or b"{}")
        path: str = scope["path"]
        query = scope["query_string"].decode()
        if path.endswith(":streamGenerateContent") and "alt=sse" in query:
            await self._stream(send, self._gemini_events())
        elif path.endswith(":generateContent"):
            await self._json(send, self._gemini_answer())
        elif path == "/v1/messages":
            if request.get("stream"):
                await self._stream(send, self._anthropic_events(request))
            else:
                await self._json(send, self._anthropic_answer(request))
        elif path == "/v1/chat/completions":
            if request.get("stream"):
                await self._stream(send, self._chat_events(request))
            else:
                await self._json(send, self._chat_answer(request))
        elif path == "/v1/responses":
            if request.get("stream"):
                await self._stream(send, self._responses_events(request))
            else:
                await self._json(send, self._responses_answer(request))
        elif path == "/v1/embeddings":
            data = [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}]
            await self._json(
                send,
                {
                    "object": "list",
                    "data": data,
                    "model": "text-embedding-3-small",
                    "usage": {"prompt_tokens": 5, "total_tokens": 5},
                },
            )
        else:
            await self._json(send, {"error": {"message": "no such route"}}, status=404)

    async def _json(self, send: Any, obj: Any, status: int = 200) -> None:
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": json.dumps(obj).encode()})

    async def _stream(self, send: Any, events: list[bytes]) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for n, event in enumerate(events):
            if n == 1:  # the opening event is out; content comes after a visible gap
                await asyncio.sleep(FIRST_TOKEN_DELAY_S)
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    # -- OpenAI ---------------------------------------------------------------------------------

    def _chat_answer(self, request: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o-2024-08-06",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Paris is the capital."},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 30,
                "completion_tokens": 5,
                "total_tokens": 35,
                "prompt_tokens_details": {"cached_tokens": 16},
                "completion_tokens_details": {"reasoning_tokens": 0},
            },
        }

    def _chat_events(self, request: dict[str, Any]) -> list[bytes]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                "id": "chatcmpl-2",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "gpt-4o-2024-08-06",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        call = {"index": 0, "id": "call_1", "type": "function"}
        events = [
            _sse(chunk({"role": "assistant", "content": ""})),
            _sse(chunk({"content": "Looking"})),
            _sse(chunk({"content": " it up."})),
            _sse(
                chunk({"tool_calls": [{**call, "function": {"name": "lookup", "arguments": ""}}]})
            ),
            _sse(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"q": "x"}'}}]})),
            _sse(chunk({}, "tool_calls")),
        ]
        usage = {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}
        events.append(_sse({**chunk({}), "choices": [], "usage": usage}))
        return [*events, b"data: [DONE]\n\n"]

    def _responses_answer(self, request: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": "resp_1",
            "object": "response",
            "created_at": 1,
            "status": "completed",
            "model": "gpt-4.1-2025-04-14",
            "output": [
                {
                    "type": "message",
                    "id": "msg_1",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "Hello there.", "annotations": []}],
                }
            ],
            "usage": {
                "input_tokens": 11,
                "output_tokens": 3,
                "total_tokens": 14,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0},
            },
        }

    def _responses_events(self, request: dict[str, Any]) -> list[bytes]:
        answer = self._responses_answer(request)
        created = {**answer, "status": "in_progress", "output": [], "usage": None}
        events: list[tuple[str, dict[str, Any]]] = [
            ("response.created", {"response": created}),
            (
                "response.output_text.delta",
                {"item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "Hello"},
            ),
            (
                "response.output_text.delta",
                {"item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": " there."},
            ),
            ("response.completed", {"response": answer}),
        ]
        return [
            _sse({"type": kind, "sequence_number": n, **obj}, kind)
            for n, (kind, obj) in enumerate(events)
        ]

    # -- Anthropic ------------------------------------------------------------------------------

    def _anthropic_answer(self, request: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-3-5-haiku-20241022",
            "content": [
                {"type": "text", "text": "Checking the weather."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": {**ANTHROPIC_USAGE, "output_tokens": 25},
        }

    def _anthropic_events(self, request: dict[str, Any]) -> list[bytes]:
        start = {
            **self._anthropic_answer(request),
            "content": [],
            "stop_reason": None,
            "usage": ANTHROPIC_USAGE,
        }
        text = {"type": "text", "text": ""}
        tool = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
        events: list[dict[str, Any]] = [
            {"type": "message_start", "message": start},
            {"type": "content_block_start", "index": 0, "content_block": text},
            {"type": "ping"},
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Checking"},
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": " the weather."},
            },
            {"type": "content_block_stop", "index": 0},
            {"type": "content_block_start", "index": 1, "content_block": tool},
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"city": '},
            },
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'},
            },
            {"type": "content_block_stop", "index": 1},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": 25},
            },
            {"type": "message_stop"},
        ]
        return [_sse(e, e["type"]) for e in events]

    # -- Gemini ---------------------------------------------------------------------------------

    def _gemini_answer(self) -> dict[str, Any]:
        return {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [{"text": "Bonjour, "}, {"text": "monde."}],
                    },
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": GEMINI_USAGE,
            "modelVersion": "gemini-2.5-flash",
        }

    def _gemini_events(self) -> list[bytes]:
        def chunk(parts: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
            candidate = {"content": {"role": "model", "parts": parts}, "index": 0}
            return {"candidates": [candidate], "modelVersion": "gemini-2.5-flash", **extra}

        first_usage = {"promptTokenCount": 40, "cachedContentTokenCount": 32}
        last = chunk(
            [{"functionCall": {"name": "translate", "args": {"to": "fr"}}}],
            usageMetadata=GEMINI_USAGE,
        )
        last["candidates"][0]["finishReason"] = "STOP"
        return [
            _sse(
                chunk([{"text": "thinking about it", "thought": True}], usageMetadata=first_usage)
            ),
            _sse(chunk([{"text": "Bonjour, "}])),
            _sse(chunk([{"text": "monde."}])),
            _sse(last),
        ]
