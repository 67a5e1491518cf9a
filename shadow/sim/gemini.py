"""Gemini ``generateContent`` and ``streamGenerateContent``, as ``shadow mock-llm`` speaks them.

``POST /v1beta/models/{model}:generateContent`` (and ``/v1/models/...``) answers one
``GenerateContentResponse``; ``:streamGenerateContent?alt=sse`` streams one per output token
as SSE (``data: {...}`` and a blank line, CRLF-terminated as Google sends them), and without
``alt=sse`` as one JSON array. The key goes in ``x-goog-api-key``, ``?key=`` or an OAuth
``Authorization: Bearer`` (any value; a key only in ``x-api-key`` or ``api-key`` is refused with
401).

A turn's text is its ``text`` parts and the string values of its ``functionResponse``'s
``response``; ``systemInstruction`` comes first. ``generationConfig`` gives
``maxOutputTokens``, ``temperature`` and ``seed``; ``tools[].functionDeclarations`` and
``toolConfig.functionCallingConfig`` (``mode`` AUTO, ANY, NONE; ``allowedFunctionNames``) the
tools (:mod:`shadow.sim.tools`); a call is a ``functionCall`` part, sent whole in the stream's
last event.

Each answer has ``candidates[0].content.parts``, ``finishReason`` on the last one (``STOP``, or
``MAX_TOKENS``), ``usageMetadata`` (``promptTokenCount`` counting all input,
``candidatesTokenCount``, ``totalTokenCount``, and ``cachedContentTokenCount`` when the
implicit cache served every turn but the last: :mod:`shadow.sim.cache`), ``modelVersion`` (the
model that answered, whatever the path named) and ``responseId``. Streamed events carry the
usage so far. Errors are ``{"error": {"code", "message", "status"}}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

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
from shadow.sim.http import JSON, SSE, Headers, Scope, header
from shadow.sim.tools import Tool

__all__ = ["GeminiFormat"]

_STATUS: dict[ErrorKind, str] = {
    "auth": "UNAUTHENTICATED",
    "invalid": "INVALID_ARGUMENT",
    "method": "INVALID_ARGUMENT",
    "not_found": "NOT_FOUND",
    "overloaded": "UNAVAILABLE",
    "rate_limit": "RESOURCE_EXHAUSTED",
    "server": "INTERNAL",
}
_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool": "STOP"}


@dataclass(frozen=True)
class GeminiFormat:
    """``generateContent``, or ``streamGenerateContent`` when ``stream``."""

    stream: bool = False

    def parse(self, raw: bytes, scope: Scope) -> Exchange:
        query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
        keyed = header(scope, b"x-goog-api-key") is not None or "key" in query
        other = any(header(scope, name) is not None for name in (b"authorization", b"x-api-key"))
        if other and not keyed:
            raise BadRequest("API key not valid: send it in x-goog-api-key or ?key=", kind="auth")
        body = json_object(raw)
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise BadRequest("contents is not specified", param="contents")
        segments = _segments(body.get("systemInstruction"), contents)
        config = body.get("generationConfig")
        config = config if isinstance(config, dict) else {}
        seed = config.get("seed")
        tools, choice = _tools(body.get("tools"), body.get("toolConfig"))
        ask = Ask(
            prompt="\n".join(segments),
            max_tokens=limit(config.get("maxOutputTokens"), "generationConfig.maxOutputTokens"),
            temperature=temperature(config.get("temperature"), "generationConfig.temperature"),
            seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
            intent=intent_of(body, scope),
            stream=self.stream,
            tools=tools,
            tool_choice=choice,
            after_tool_result=_has_function_response(contents[-1]),
            cache_prefix="\n".join(segments[:-1]) if len(segments) > 1 else None,
        )
        sse = query.get("alt") == ["sse"]
        return _GeminiExchange(ask, sse=sse, stream_headers=SSE if sse else JSON)

    def error(self, kind: ErrorKind, message: str, param: str | None) -> tuple[int, bytes]:
        status = ERROR_STATUS[kind]
        error = {"code": status, "message": message, "status": _STATUS[kind]}
        return status, msgspec.json.encode({"error": error})


@dataclass
class _GeminiExchange:
    ask: Ask
    sse: bool
    stream_headers: Headers = field(default_factory=lambda: SSE)

    def _response(
        self, reply: Reply, parts: list[dict[str, Any]], output_tokens: int, done: bool
    ) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if done:
            candidate["finishReason"] = _FINISH[reply.finish]
        usage: dict[str, Any] = {
            "promptTokenCount": reply.prompt_tokens,
            "candidatesTokenCount": output_tokens,
            "totalTokenCount": reply.prompt_tokens + output_tokens,
        }
        if reply.cache_read:
            usage["cachedContentTokenCount"] = reply.cache_read
        usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": reply.prompt_tokens}]
        return {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": reply.model,
            "responseId": reply.hex_id(),
        }

    def _whole_parts(self, reply: Reply) -> list[dict[str, Any]]:
        if reply.tool is not None:
            call = {"name": reply.tool.name, "args": dict(reply.tool.arguments)}
            return [{"functionCall": call}]
        return [{"text": reply.text}]

    def body(self, reply: Reply) -> bytes:
        return msgspec.json.encode(
            self._response(reply, self._whole_parts(reply), reply.output_tokens, True)
        )

    def head(self, reply: Reply) -> bytes:
        return b"" if self.sse else b"["

    def piece(self, reply: Reply, index: int, text: str) -> bytes:
        last = index == reply.output_tokens - 1
        if reply.tool is not None:
            if not last:
                return b""
            parts = self._whole_parts(reply)
        else:
            parts = [{"text": text}]
        data = msgspec.json.encode(self._response(reply, parts, index + 1, last))
        if self.sse:
            return b"data: " + data + b"\r\n\r\n"
        return (b"" if index == 0 else b",\r\n") + data

    def tail(self, reply: Reply) -> bytes:
        return b"" if self.sse else b"]"


def _part_text(part: object) -> str | None:
    if not isinstance(part, dict):
        return None
    if isinstance(part.get("text"), str):
        return str(part["text"])
    answer = part.get("functionResponse")
    if isinstance(answer, dict) and isinstance(answer.get("response"), dict):
        return "\n".join(v for v in answer["response"].values() if isinstance(v, str))
    return None


def _turn_text(content: object) -> str:
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        raise BadRequest("each content needs parts", param="contents")
    return "\n".join(t for t in map(_part_text, parts) if t is not None)


def _segments(system: object, contents: list[Any]) -> list[str]:
    segments = [_turn_text(system)] if isinstance(system, dict) else []
    return segments + [_turn_text(c) for c in contents]


def _has_function_response(content: object) -> bool:
    parts = content.get("parts") if isinstance(content, dict) else None
    return isinstance(parts, list) and any(
        isinstance(p, dict) and "functionResponse" in p for p in parts
    )


def _tools(value: object, config: object) -> tuple[tuple[Tool, ...], str]:
    tools: list[Tool] = []
    for group in value if isinstance(value, list) else ():
        declarations = group.get("functionDeclarations") if isinstance(group, dict) else None
        for d in declarations if isinstance(declarations, list) else ():
            if isinstance(d, dict) and isinstance(d.get("name"), str):
                schema = d.get("parameters")
                tools.append(Tool(d["name"], schema if isinstance(schema, dict) else {}))
    calling = config.get("functionCallingConfig") if isinstance(config, dict) else None
    calling = calling if isinstance(calling, dict) else {}
    mode = str(calling.get("mode", "AUTO")).upper()
    if mode == "NONE":
        return tuple(tools), "none"
    if mode == "ANY":
        allowed = calling.get("allowedFunctionNames")
        if isinstance(allowed, list) and len(allowed) == 1 and isinstance(allowed[0], str):
            return tuple(tools), "tool:" + allowed[0]
        return tuple(tools), "any"
    return tuple(tools), "auto"
