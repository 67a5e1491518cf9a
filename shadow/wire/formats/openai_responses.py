"""OpenAI Responses (``/v1/responses``).

Request: ``model``, ``stream``, ``instructions``, ``input`` (a string, or items whose
``content`` is a string or ``input_text`` parts; ``function_call_output`` items are tool
results), ``tools``. Answer: ``output[]`` items: ``message`` items' ``output_text`` parts,
``function_call`` items (``name``, ``arguments``); reasoning items are not output. ``usage``:
``input_tokens``, ``output_tokens``, ``input_tokens_details.cached_tokens``,
``output_tokens_details.reasoning_tokens``; the finish reason is
``incomplete_details.reason``, else ``status``. Stream events: ``response.output_text.delta``
(content), ``response.output_item.done`` (a whole function call), and ``response.created`` /
``response.completed`` / ``response.incomplete`` / ``response.failed`` whose ``response``
carries the model and the usage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from shadow.wire.formats.base import Answer, Counts, RequestFacts, StreamState, string
from shadow.wire.formats.openai_chat import chat_usage

__all__ = ["RESPONSES", "ResponsesFormat"]

_END_EVENTS: Final = frozenset({"response.completed", "response.incomplete", "response.failed"})


class ResponsesFormat:
    """OpenAI Responses (module docstring)."""

    name: Final = "openai_responses"
    family: Final = "openai"

    def request(self, body: Mapping[str, Any], path: str = "") -> RequestFacts:
        pieces = [string(body.get("instructions")) or ""]
        turns = 0
        given = body.get("input")
        if isinstance(given, str):
            pieces.append(given)
            turns = 1
        for item in given if isinstance(given, list) else ():
            if isinstance(item, str):
                pieces.append(item)
                turns += 1
            elif isinstance(item, Mapping):
                turns += item.get("role") == "user"
                pieces += _item_texts(item)
        return RequestFacts(
            model=string(body.get("model")),
            stream=body.get("stream") is True,
            prompt="\n".join(p for p in pieces if p),
            user_turns=turns,
            tools=bool(body.get("tools")),
        )

    def answer(self, body: Mapping[str, Any]) -> Answer | None:
        output = body.get("output")
        if not isinstance(output, list):
            return None
        parts = [part for item in output for part in _message_parts(item)]
        calls = [
            _call(item)
            for item in output
            if isinstance(item, Mapping) and item.get("type") == "function_call"
        ]
        return Answer(
            text="".join(parts) if parts else None,
            tool_calls=calls,
            model=string(body.get("model")),
            usage=chat_usage(body.get("usage")),
            finish_reason=_finish(body),
        )

    def event(self, state: StreamState, event: Mapping[str, Any], offset: float) -> None:
        kind = event.get("type")
        if kind == "response.output_text.delta":
            state.content(event.get("delta"), offset)
        elif kind == "response.output_item.done":
            item = event.get("item")
            if isinstance(item, Mapping) and item.get("type") == "function_call":
                call = _call(item)
                state.tool(len(state.tools), call["name"], call["arguments"])
        elif kind in _END_EVENTS or kind == "response.created":
            response = event.get("response")
            if not isinstance(response, Mapping):
                return
            state.see_model(response.get("model"))
            state.set_usage(response.get("usage"))
            if kind in _END_EVENTS:
                state.finish(_finish(response))

    def usage(self, usage: object) -> Counts | None:
        return chat_usage(usage)


def _finish(response: Mapping[str, Any]) -> str | None:
    details = response.get("incomplete_details")
    reason = details.get("reason") if isinstance(details, Mapping) else None
    return string(reason) or string(response.get("status"))


def _call(item: Mapping[str, Any]) -> dict[str, str]:
    name, arguments = item.get("name"), item.get("arguments")
    return {
        "name": name if isinstance(name, str) else "",
        "arguments": arguments if isinstance(arguments, str) else "",
    }


def _item_texts(item: Mapping[str, Any]) -> list[str]:
    """The text of one input item: its content, or a tool result's output."""
    content = item.get("content", item.get("output"))
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [
            p["text"] for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str)
        ]
    return []


def _message_parts(item: object) -> list[str]:
    """The text parts of one output item (reasoning items are not output)."""
    if not isinstance(item, Mapping) or item.get("type", "message") != "message":
        return []
    content = item.get("content")
    if not isinstance(content, list):
        return []
    return [
        part["text"]
        for part in content
        if isinstance(part, Mapping)
        and part.get("type", "output_text") == "output_text"
        and isinstance(part.get("text"), str)
    ]


RESPONSES: Final = ResponsesFormat()
