"""OpenAI Responses (``POST /v1/responses``), as ``shadow mock-llm`` speaks it.

``input`` is a string or a list of items (messages whose ``content`` is a string or
``input_text``/``output_text`` parts, and ``function_call_output`` items); ``instructions``
come first in the prompt. ``max_output_tokens``, ``temperature``, ``tools`` (``type``
``function``) and ``tool_choice`` (``auto``, ``none``, ``required``, a named function) are read.

The answer is a ``response`` whose ``output`` is one ``message`` with one ``output_text``
part, or one ``function_call`` item (:mod:`shadow.sim.tools`); ``status`` ``completed``, or
``incomplete`` with ``incomplete_details.reason`` ``max_output_tokens``; ``usage`` has
``input_tokens`` (``input_tokens_details.cached_tokens`` 0), ``output_tokens`` and
``total_tokens``. ``stream: true`` sends ``response.created`` and ``response.in_progress`` as
the stream opens, ``response.output_item.added`` and ``response.content_part.added``, one
``response.output_text.delta`` (or ``response.function_call_arguments.delta``) per output
token, the ``.done`` events, and ``response.completed`` (``response.incomplete``) with usage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from shadow.sim.chat import ChatFormat
from shadow.sim.exchange import (
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

__all__ = ["ResponsesFormat"]


@dataclass(frozen=True)
class ResponsesFormat:
    """The Responses API; errors as Chat Completions gives them."""

    def parse(self, raw: bytes, scope: Scope) -> Exchange:
        body = json_object(raw)
        given = body.get("input")
        if isinstance(given, str):
            items: list[Any] = [{"role": "user", "content": given}]
        elif isinstance(given, list) and given:
            items = given
        else:
            raise BadRequest("'input' must be a string or a non-empty array", param="input")
        instructions = body.get("instructions")
        segments = [instructions] if isinstance(instructions, str) else []
        segments += [_item_text(item) for item in items]
        last = items[-1]
        ask = Ask(
            prompt="\n".join(segments),
            max_tokens=limit(body.get("max_output_tokens"), "max_output_tokens"),
            temperature=temperature(body.get("temperature")),
            intent=intent_of(body, scope),
            stream=bool(body.get("stream")),
            tools=_tools(body.get("tools")),
            tool_choice=_choice(body.get("tool_choice")),
            after_tool_result=isinstance(last, dict) and last.get("type") == "function_call_output",
        )
        return _ResponsesExchange(ask, body)

    def error(self, kind: ErrorKind, message: str, param: str | None) -> tuple[int, bytes]:
        return ChatFormat().error(kind, message, param)


@dataclass
class _ResponsesExchange:
    ask: Ask
    request: dict[str, Any]
    stream_headers: Headers = field(default_factory=lambda: SSE)
    sequence: int = 0

    def _item(self, reply: Reply, *, whole: bool) -> dict[str, Any]:
        status = "completed" if whole else "in_progress"
        if reply.tool is not None:
            return {
                "type": "function_call",
                "id": "fc_" + reply.hex_id(),
                "call_id": "call_" + reply.tool.id,
                "name": reply.tool.name,
                "arguments": reply.tool.json if whole else "",
                "status": status,
            }
        content = [self._part(reply.text)] if whole else []
        return {"type": "message", "id": "msg_" + reply.hex_id(), "status": status,
                "role": "assistant", "content": content}  # fmt: skip

    @staticmethod
    def _part(text: str) -> dict[str, Any]:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    def _response(self, reply: Reply, *, done: bool) -> dict[str, Any]:
        status = "in_progress"
        if done:
            status = "incomplete" if reply.finish == "length" else "completed"
        tool_choice = self.request.get("tool_choice", "auto")
        return {
            "id": "resp_" + reply.hex_id(),
            "object": "response",
            "created_at": reply.created,
            "status": status,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"}
            if status == "incomplete"
            else None,
            "instructions": self.request.get("instructions"),
            "max_output_tokens": self.ask.max_tokens,
            "metadata": self.request.get("metadata") or {},
            "model": reply.model,
            "output": [self._item(reply, whole=True)] if done else [],
            "parallel_tool_calls": True,
            "temperature": self.ask.temperature,
            "text": {"format": {"type": "text"}},
            "tool_choice": tool_choice,
            "tools": self.request.get("tools") or [],
            "top_p": self.request.get("top_p"),
            "truncation": "disabled",
            "usage": self._usage(reply) if done else None,
        }

    @staticmethod
    def _usage(reply: Reply) -> dict[str, Any]:
        return {
            "input_tokens": reply.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": reply.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": reply.prompt_tokens + reply.output_tokens,
        }

    def _event(self, name: str, payload: dict[str, Any]) -> bytes:
        data = msgspec.json.encode({"type": name, "sequence_number": self.sequence, **payload})
        self.sequence += 1
        return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"

    def body(self, reply: Reply) -> bytes:
        return msgspec.json.encode(self._response(reply, done=True))

    def head(self, reply: Reply) -> bytes:
        opening = self._response(reply, done=False)
        return self._event("response.created", {"response": opening}) + self._event(
            "response.in_progress", {"response": opening}
        )

    def piece(self, reply: Reply, index: int, text: str) -> bytes:
        item_id = self._item(reply, whole=False)["id"]
        opening = b""
        if index == 0:
            item = self._item(reply, whole=False)
            opening = self._event("response.output_item.added", {"output_index": 0, "item": item})
            if reply.tool is None:
                opening += self._event("response.content_part.added", {
                    "item_id": item_id, "output_index": 0, "content_index": 0,
                    "part": self._part(""),
                })  # fmt: skip
        if reply.tool is not None:
            delta = {"item_id": item_id, "output_index": 0, "delta": text}
            return opening + self._event("response.function_call_arguments.delta", delta)
        delta = {"item_id": item_id, "output_index": 0, "content_index": 0, "delta": text,
                 "logprobs": []}  # fmt: skip
        return opening + self._event("response.output_text.delta", delta)

    def tail(self, reply: Reply) -> bytes:
        item = self._item(reply, whole=True)
        where = {"item_id": item["id"], "output_index": 0}
        if reply.tool is not None:
            end = self._event(
                "response.function_call_arguments.done", {**where, "arguments": reply.tool.json}
            )
        else:
            at = {**where, "content_index": 0}
            end = self._event("response.output_text.done", {**at, "text": reply.text,
                                                             "logprobs": []})  # fmt: skip
            end += self._event("response.content_part.done", {**at, "part": self._part(reply.text)})
        end += self._event("response.output_item.done", {"output_index": 0, "item": item})
        final = self._response(reply, done=True)
        name = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        return end + self._event(name, {"response": final})


def _item_text(item: object) -> str:
    if isinstance(item, str):
        return item
    if not isinstance(item, dict):
        return ""
    if item.get("type") == "function_call_output":
        output = item.get("output")
        return output if isinstance(output, str) else ""
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _tools(value: object) -> tuple[Tool, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(
        Tool(t["name"], t["parameters"] if isinstance(t.get("parameters"), dict) else {})
        for t in value
        if isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("name"), str)
    )


def _choice(value: object) -> str:
    if value in ("none", "auto"):
        return str(value)
    if value == "required":
        return "any"
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return "tool:" + str(value["name"])
    return "auto"
