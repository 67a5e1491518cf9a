"""Anthropic Messages (``POST /v1/messages``), as ``shadow mock-llm`` speaks it.

Requests need ``model``, ``max_tokens`` and ``messages`` and the ``anthropic-version`` header;
the key goes in ``x-api-key`` or ``Authorization: Bearer`` (any value: the server has no keys;
a key only in another API's header, ``x-goog-api-key`` or ``api-key``, is refused with 401).
``system`` may be a string or text blocks; a turn's text is its ``text`` blocks and
``tool_result`` contents.

The answer is a ``message`` whose ``content`` is one ``text`` block, or one ``tool_use`` block
when the model calls a tool (:mod:`shadow.sim.tools`; ``stop_reason`` ``tool_use``), else
``stop_reason`` ``end_turn`` or ``max_tokens``. ``usage.input_tokens`` counts the input that
was neither read from nor written to the cache; ``cache_read_input_tokens`` and
``cache_creation_input_tokens`` count the prefix up to the last ``cache_control`` breakpoint
(system blocks, then the turns' blocks) as :mod:`shadow.sim.cache` reads or writes it.

``stream: true`` sends the documented events: ``message_start`` (input usage, as the stream
opens), ``content_block_start``, a ``ping``, one ``content_block_delta`` per output token
(``text_delta``, or ``input_json_delta`` for a tool's arguments), ``content_block_stop``,
``message_delta`` (``stop_reason`` and the cumulative usage) and ``message_stop``. Errors are
``{"type": "error", "error": {...}}``; an overloaded server answers 529.
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
    check_key,
    intent_of,
    json_object,
    limit,
    temperature,
)
from shadow.sim.http import SSE, Headers, Scope, header
from shadow.sim.tools import Tool

__all__ = ["AnthropicFormat"]

_ERROR_TYPES: dict[ErrorKind, str] = {
    "auth": "authentication_error",
    "invalid": "invalid_request_error",
    "method": "invalid_request_error",
    "not_found": "not_found_error",
    "overloaded": "overloaded_error",
    "rate_limit": "rate_limit_error",
    "server": "api_error",
}
_STOP = {"stop": "end_turn", "length": "max_tokens", "tool": "tool_use"}


@dataclass(frozen=True)
class AnthropicFormat:
    """Anthropic Messages."""

    def parse(self, raw: bytes, scope: Scope) -> Exchange:
        check_key(scope, (b"x-api-key", b"authorization"))
        if header(scope, b"anthropic-version") is None:
            raise BadRequest("anthropic-version: header is required", param="anthropic-version")
        body = json_object(raw)
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise BadRequest("model: Field required", param="model")
        max_tokens = limit(body.get("max_tokens"), "max_tokens", required=True)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages: at least one message is required", param="messages")
        segments, marked = _segments(body.get("system"), messages)
        ask = Ask(
            prompt="\n".join(segments),
            max_tokens=max_tokens,
            temperature=temperature(body.get("temperature"), top=1.0),
            intent=intent_of(body, scope),
            stream=bool(body.get("stream")),
            tools=_tools(body.get("tools")),
            tool_choice=_choice(body.get("tool_choice")),
            after_tool_result=_ends_in_tool_result(messages[-1]),
            cache_prefix="\n".join(segments[: marked + 1]) if marked >= 0 else None,
        )
        return _MessagesExchange(ask)

    def error(self, kind: ErrorKind, message: str, param: str | None) -> tuple[int, bytes]:
        status = 529 if kind == "overloaded" else ERROR_STATUS[kind]
        error = {"type": _ERROR_TYPES[kind], "message": message}
        return status, msgspec.json.encode({"type": "error", "error": error})


@dataclass
class _MessagesExchange:
    ask: Ask
    stream_headers: Headers = field(default_factory=lambda: SSE)

    def _usage(self, reply: Reply, output_tokens: int) -> dict[str, Any]:
        return {
            "input_tokens": reply.prompt_tokens - reply.cache_read - reply.cache_write,
            "cache_creation_input_tokens": reply.cache_write,
            "cache_read_input_tokens": reply.cache_read,
            "output_tokens": output_tokens,
        }

    def _message(self, reply: Reply, content: list[Any], done: bool) -> dict[str, Any]:
        return {
            "id": "msg_" + reply.hex_id(),
            "type": "message",
            "role": "assistant",
            "model": reply.model,
            "content": content,
            "stop_reason": _STOP[reply.finish] if done else None,
            "stop_sequence": None,
            "usage": self._usage(reply, reply.output_tokens if done else 1),
        }

    def _block(self, reply: Reply, *, whole: bool) -> dict[str, Any]:
        if reply.tool is None:
            return {"type": "text", "text": reply.text if whole else ""}
        tool = reply.tool
        arguments = dict(tool.arguments) if whole else {}
        return {"type": "tool_use", "id": "toolu_" + tool.id, "name": tool.name, "input": arguments}

    def body(self, reply: Reply) -> bytes:
        return msgspec.json.encode(self._message(reply, [self._block(reply, whole=True)], True))

    def head(self, reply: Reply) -> bytes:
        return _event("message_start", {"message": self._message(reply, [], False)})

    def piece(self, reply: Reply, index: int, text: str) -> bytes:
        opening = b""
        if index == 0:
            block = self._block(reply, whole=False)
            opening = _event("content_block_start", {"index": 0, "content_block": block})
            opening += _event("ping", {})
        if reply.tool is None:
            delta = {"type": "text_delta", "text": text}
        else:
            delta = {"type": "input_json_delta", "partial_json": text}
        return opening + _event("content_block_delta", {"index": 0, "delta": delta})

    def tail(self, reply: Reply) -> bytes:
        delta = {"stop_reason": _STOP[reply.finish], "stop_sequence": None}
        usage = self._usage(reply, reply.output_tokens)
        return (
            _event("content_block_stop", {"index": 0})
            + _event("message_delta", {"delta": delta, "usage": usage})
            + _event("message_stop", {})
        )


def _event(name: str, payload: dict[str, Any]) -> bytes:
    data = msgspec.json.encode({"type": name, **payload})
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def _segments(system: object, messages: list[Any]) -> tuple[list[str], int]:
    """The prompt's segments (system, then each turn) and the index of the last one holding
    a ``cache_control`` breakpoint (-1: none)."""
    segments: list[str] = []
    marked = -1
    if isinstance(system, str):
        segments.append(system)
    elif isinstance(system, list):
        segments.append("\n".join(_block_text(b) for b in system if _is_text(b)))
        if any(isinstance(b, dict) and b.get("cache_control") for b in system):
            marked = 0
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise BadRequest("messages: each message needs a role user or assistant", "messages")
        content = message.get("content")
        if isinstance(content, str):
            segments.append(content)
            continue
        if not isinstance(content, list):
            raise BadRequest("messages: content must be a string or an array", "messages")
        segments.append("\n".join(_block_text(b) for b in content if _is_text(b)))
        if any(isinstance(b, dict) and b.get("cache_control") for b in content):
            marked = len(segments) - 1
    return segments, marked


def _is_text(block: object) -> bool:
    return isinstance(block, dict) and block.get("type") in ("text", "tool_result")


def _block_text(block: dict[str, Any]) -> str:
    if block.get("type") == "text":
        return str(block.get("text", ""))
    content = block.get("content")  # a tool_result: a string or text blocks
    if isinstance(content, list):
        return "\n".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return content if isinstance(content, str) else ""


def _ends_in_tool_result(message: object) -> bool:
    content = message.get("content") if isinstance(message, dict) else None
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    )


def _tools(value: object) -> tuple[Tool, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(
        Tool(t["name"], t["input_schema"] if isinstance(t.get("input_schema"), dict) else {})
        for t in value
        if isinstance(t, dict) and isinstance(t.get("name"), str)
    )


def _choice(value: object) -> str:
    if not isinstance(value, dict):
        return "auto"
    kind = value.get("type")
    if kind == "tool" and isinstance(value.get("name"), str):
        return "tool:" + str(value["name"])
    return str(kind) if kind in ("any", "none") else "auto"
