"""OpenAI Chat Completions and legacy Completions, as ``shadow mock-llm`` speaks them.

``POST /v1/chat/completions`` and ``/v1/completions`` (and Azure OpenAI's
``/openai/deployments/{d}/chat/completions`` and ``/completions``; any key, in any header, is
accepted). ``stream`` sends ``chat.completion.chunk`` events, one output token each, the first
after a role-only chunk, then a chunk with ``finish_reason`` and, with
``stream_options.include_usage``, a usage chunk; ``data: [DONE]`` ends the stream. A tool call
(:mod:`shadow.sim.tools`; chat only) is ``message.tool_calls`` with ``finish_reason``
``tool_calls``, streamed as ``delta.tool_calls`` argument pieces. ``cached_tokens`` is 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from shadow.sim.exchange import (
    ERROR_STATUS,
    Ask,
    BadRequest,
    ErrorKind,
    Exchange,
    Reply,
    intent_of,
    json_object,
    limit,
    temperature,
)
from shadow.sim.http import SSE, Headers, Scope
from shadow.sim.tools import Tool

__all__ = ["ChatFormat"]

_ERROR_TYPES: dict[ErrorKind, str] = {
    "auth": "authentication_error",
    "invalid": "invalid_request_error",
    "method": "invalid_request_error",
    "not_found": "not_found",
    "overloaded": "service_unavailable",
    "rate_limit": "rate_limit_exceeded",
    "server": "server_error",
}
_FINISH = {"stop": "stop", "length": "length", "tool": "tool_calls"}


@dataclass(frozen=True)
class ChatFormat:
    """Chat Completions (``chat``) or legacy Completions; ``fingerprint`` per server."""

    chat: bool = True
    fingerprint: str = ""

    def parse(self, raw: bytes, scope: Scope) -> Exchange:
        body = json_object(raw)
        if self.chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise BadRequest("'messages' must be a non-empty array", param="messages")
            prompt = "\n".join(
                _content_text(m.get("content")) for m in messages if isinstance(m, dict)
            )
        else:
            given = body.get("prompt")
            if not isinstance(given, str | list):
                raise BadRequest("'prompt' must be a string or an array of strings", param="prompt")
            prompt = "\n".join(str(p) for p in given) if isinstance(given, list) else given
        max_tokens = limit(body.get("max_completion_tokens", body.get("max_tokens")), "max_tokens")
        seed = body.get("seed")
        options = body.get("stream_options")
        last = body["messages"][-1] if self.chat else None
        ask = Ask(
            prompt=prompt,
            max_tokens=max_tokens,
            temperature=temperature(body.get("temperature")),
            seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
            intent=intent_of(body, scope),
            stream=bool(body.get("stream")),
            tools=_tools(body.get("tools")) if self.chat else (),
            tool_choice=_choice(body.get("tool_choice")),
            after_tool_result=isinstance(last, dict) and last.get("role") == "tool",
        )
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        return _ChatExchange(ask, self.chat, self.fingerprint, include_usage)

    def error(self, kind: ErrorKind, message: str, param: str | None) -> tuple[int, bytes]:
        code = _ERROR_TYPES[kind]
        error = {"message": message, "type": code, "param": param, "code": code}
        return ERROR_STATUS[kind], msgspec.json.encode({"error": error})


@dataclass
class _ChatExchange:
    ask: Ask
    chat: bool
    fingerprint: str
    include_usage: bool
    stream_headers: Headers = field(default_factory=lambda: SSE)

    def _envelope(self, reply: Reply, kind: str) -> dict[str, Any]:
        return {
            "id": ("chatcmpl-" if self.chat else "cmpl-") + reply.hex_id(12),
            "object": kind,
            "created": reply.created,
            "model": reply.model,
            "system_fingerprint": self.fingerprint,
        }

    def _usage(self, reply: Reply) -> dict[str, Any]:
        return {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.prompt_tokens + reply.output_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
        }

    def body(self, reply: Reply) -> bytes:
        choice: dict[str, Any]
        if self.chat:
            message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
            if reply.tool is not None:
                message["content"] = None
                message["tool_calls"] = [_call(reply, reply.tool.json)]
            choice = {"index": 0, "message": message, "finish_reason": _FINISH[reply.finish]}
            kind = "chat.completion"
        else:
            choice = {"index": 0, "text": reply.text, "finish_reason": _FINISH[reply.finish]}
            kind = "text_completion"
        choice["logprobs"] = None
        return msgspec.json.encode(
            {**self._envelope(reply, kind), "choices": [choice], "usage": self._usage(reply)}
        )

    def _chunk(self, reply: Reply, delta: dict[str, Any] | str | None, finish: str | None) -> bytes:
        choice: dict[str, Any]
        if self.chat:
            delta = {"content": delta} if isinstance(delta, str) else delta or {}
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            kind = "chat.completion.chunk"
        else:
            text = delta if isinstance(delta, str) else ""
            choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
            kind = "text_completion"
        return _data({**self._envelope(reply, kind), "choices": [choice]})

    def head(self, reply: Reply) -> bytes:
        return b""

    def piece(self, reply: Reply, index: int, text: str) -> bytes:
        if reply.tool is None:
            first = self._chunk(reply, {"role": "assistant", "content": ""}, None)
            chunk = self._chunk(reply, text, None)
            return first + chunk if index == 0 and self.chat else chunk
        if index == 0:
            opening = {"role": "assistant", "content": None, "tool_calls": [_call(reply, "")]}
            call = self._chunk(reply, opening, None)
        else:
            call = b""
        args = {"tool_calls": [{"index": 0, "function": {"arguments": text}}]}
        return call + self._chunk(reply, args, None)

    def tail(self, reply: Reply) -> bytes:
        end = self._chunk(reply, None, _FINISH[reply.finish])
        if self.include_usage:
            usage = {
                **self._envelope(reply, self._kind),
                "choices": [],
                "usage": self._usage(reply),
            }
            end += _data(usage)
        return end + b"data: [DONE]\n\n"

    @property
    def _kind(self) -> str:
        return "chat.completion.chunk" if self.chat else "text_completion"


def _call(reply: Reply, arguments: str) -> dict[str, Any]:
    assert reply.tool is not None
    function = {"name": reply.tool.name, "arguments": arguments}
    return {"index": 0, "id": "call_" + reply.tool.id, "type": "function", "function": function}


def _data(payload: dict[str, Any]) -> bytes:
    return b"data: " + msgspec.json.encode(payload) + b"\n\n"


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _tools(value: object) -> tuple[Tool, ...]:
    if not isinstance(value, list):
        return ()
    tools = []
    for item in value:
        function = item.get("function") if isinstance(item, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            schema = function.get("parameters")
            tools.append(Tool(function["name"], schema if isinstance(schema, dict) else {}))
    return tuple(tools)


def _choice(value: object) -> str:
    if value == "none":
        return "none"
    if value == "required":
        return "any"
    if isinstance(value, dict):
        function = value.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return "tool:" + str(function["name"])
    return "auto"
