"""Anthropic Messages (``/v1/messages``).

Request: ``model``, ``stream``, ``system`` (a string or text blocks), ``messages`` whose
``content`` is a string or blocks (``text``, ``tool_use``, ``tool_result`` whose ``content`` is a
string or text blocks), ``tools``. A user turn is a ``user`` message that is not only tool
results. Answer: ``content[]`` blocks (``text``; ``tool_use`` with ``name`` and ``input``, an
object, kept as its JSON text), ``model``, ``stop_reason``, ``usage``. Stream events:
``message_start`` (model, input usage), ``content_block_start`` (a ``tool_use`` block's name),
``content_block_delta`` (``text_delta`` content, ``input_json_delta`` tool arguments; thinking
deltas are not content), ``message_delta`` (``stop_reason``; its usage is cumulative, so it
replaces the counts it names), ``message_stop``; ``ping`` is ignored.

Usage under the one convention: ``prompt_tokens`` = ``input_tokens`` +
``cache_read_input_tokens`` + ``cache_creation_input_tokens`` (Anthropic's ``input_tokens``
leaves out the cached part, OpenAI's does not), ``cached_tokens`` = ``cache_read_input_tokens``,
``cache_write_tokens`` = ``cache_creation_input_tokens``, ``completion_tokens`` =
``output_tokens``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgspec

from shadow.wire.formats.base import Answer, Counts, RequestFacts, StreamState, count, string

__all__ = ["ANTHROPIC", "AnthropicFormat", "anthropic_usage"]


def anthropic_usage(usage: object) -> Counts | None:
    """Counts of an Anthropic ``usage`` object under the one convention (module docstring)."""
    if not isinstance(usage, Mapping):
        return None
    uncached = count(usage.get("input_tokens"))
    read = count(usage.get("cache_read_input_tokens"))
    written = count(usage.get("cache_creation_input_tokens"))
    completion = count(usage.get("output_tokens"))
    if uncached is None and completion is None:
        return None
    prompt = None if uncached is None else uncached + (read or 0) + (written or 0)
    return Counts(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=read,
        cache_write_tokens=written,
    )


class AnthropicFormat:
    """Anthropic Messages (module docstring)."""

    name: Final = "anthropic"
    family: Final = "anthropic"

    def request(self, body: Mapping[str, Any], path: str = "") -> RequestFacts:
        pieces = _block_texts(body.get("system"))
        turns = 0
        messages = body.get("messages")
        for message in messages if isinstance(messages, list) else ():
            if not isinstance(message, Mapping):
                continue
            content = message.get("content")
            pieces += _block_texts(content)
            if message.get("role") == "user" and not _only_tool_results(content):
                turns += 1
        return RequestFacts(
            model=string(body.get("model")),
            stream=body.get("stream") is True,
            prompt="\n".join(p for p in pieces if p),
            user_turns=turns,
            tools=bool(body.get("tools")),
        )

    def answer(self, body: Mapping[str, Any]) -> Answer | None:
        content = body.get("content")
        if not isinstance(content, list):
            return None
        texts: list[str] = []
        calls: list[dict[str, str]] = []
        for block in content:
            if not isinstance(block, Mapping):
                continue
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif block.get("type") == "tool_use":
                name = block.get("name")
                calls.append(
                    {
                        "name": name if isinstance(name, str) else "",
                        "arguments": msgspec.json.encode(block.get("input", {})).decode(),
                    }
                )
        return Answer(
            text="".join(texts) if texts else None,
            tool_calls=calls,
            model=string(body.get("model")),
            usage=anthropic_usage(body.get("usage")),
            finish_reason=string(body.get("stop_reason")),
        )

    def event(self, state: StreamState, event: Mapping[str, Any], offset: float) -> None:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message")
            if isinstance(message, Mapping):
                state.see_model(message.get("model"))
                state.set_usage(message.get("usage"))
            return
        index = event.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            index = 0
        if kind == "content_block_start":
            block = event.get("content_block")
            if isinstance(block, Mapping) and block.get("type") == "tool_use":
                state.tool(index, block.get("name"), "")
            elif isinstance(block, Mapping) and block.get("type") == "text":
                state.content(block.get("text"), offset)  # normally empty: not content
        elif kind == "content_block_delta":
            delta = event.get("delta")
            if not isinstance(delta, Mapping):
                return
            if delta.get("type") == "text_delta":
                state.content(delta.get("text"), offset)
            elif delta.get("type") == "input_json_delta":
                state.tool(index, None, delta.get("partial_json"))
        elif kind == "message_delta":
            state.set_usage(event.get("usage"), merge=True)
            delta = event.get("delta")
            if isinstance(delta, Mapping):
                state.finish(delta.get("stop_reason"))
        elif kind == "error":
            error = event.get("error")
            reason = error.get("type") if isinstance(error, Mapping) else None
            state.error = reason if isinstance(reason, str) and reason else "error"
            state.finish(state.error)

    def usage(self, usage: object) -> Counts | None:
        return anthropic_usage(usage)


def _block_texts(content: object) -> list[str]:
    """The text of a string or of content blocks (tool results' content included)."""
    if isinstance(content, str):
        return [content]
    texts: list[str] = []
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, Mapping):
            continue
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_result":
            texts += _block_texts(block.get("content"))
    return texts


def _only_tool_results(content: object) -> bool:
    return (
        isinstance(content, list)
        and bool(content)
        and all(isinstance(b, Mapping) and b.get("type") == "tool_result" for b in content)
    )


ANTHROPIC: Final = AnthropicFormat()
