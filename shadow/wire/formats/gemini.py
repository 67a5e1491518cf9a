"""Gemini ``generateContent`` and ``streamGenerateContent`` (``/v1beta/models/{model}:…``).

Request: the model and whether it streams are in the path (``models/{model}:generateContent``,
``:streamGenerateContent``, with ``?alt=sse`` for Server-Sent Events); the body holds
``systemInstruction`` and ``contents[]`` (``role`` ``user`` or ``model``; ``parts[]`` with
``text``, ``functionCall``, ``functionResponse``) and ``tools[].functionDeclarations``. A user
turn is a ``user`` content (or one without a role) that is not only function responses. Answer:
``candidates[0].content.parts`` (``text`` parts, thought parts left out; ``functionCall``
``name`` and ``args``, kept as JSON text), ``candidates[0].finishReason``, ``modelVersion``,
``usageMetadata``. A stream is a sequence of such responses, one per event, without ``[DONE]``;
the last ``usageMetadata`` holds the totals.

Usage under the one convention: ``prompt_tokens`` = ``promptTokenCount`` (which includes the
cached content) + ``toolUsePromptTokenCount``, ``cached_tokens`` = ``cachedContentTokenCount``,
``completion_tokens`` = ``candidatesTokenCount`` + ``thoughtsTokenCount`` (thinking is billed
as output, and OpenAI's completion tokens include reasoning), ``reasoning_tokens`` =
``thoughtsTokenCount``; Gemini reports no cache writes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from shadow.wire.formats.base import Answer, Counts, RequestFacts, StreamState, count, string

__all__ = ["GEMINI", "GeminiFormat", "gemini_usage"]

_MODEL = re.compile(r"/models/([^/:]+):")


def gemini_usage(usage: object) -> Counts | None:
    """Counts of a ``usageMetadata`` object under the one convention (module docstring)."""
    if not isinstance(usage, Mapping):
        return None
    prompt = count(usage.get("promptTokenCount"))
    candidates = count(usage.get("candidatesTokenCount"))
    thoughts = count(usage.get("thoughtsTokenCount"))
    if prompt is None and candidates is None and thoughts is None:
        return None
    tool_prompt = count(usage.get("toolUsePromptTokenCount"))
    if prompt is not None and tool_prompt is not None:
        prompt += tool_prompt
    completion = None
    if candidates is not None or thoughts is not None:
        completion = (candidates or 0) + (thoughts or 0)
    return Counts(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=count(usage.get("cachedContentTokenCount")),
        reasoning_tokens=thoughts,
    )


class GeminiFormat:
    """Gemini generateContent (module docstring)."""

    name: Final = "gemini"
    family: Final = "gemini"

    def request(self, body: Mapping[str, Any], path: str = "") -> RequestFacts:
        system = body.get("systemInstruction")
        pieces = _part_texts(system.get("parts")) if isinstance(system, Mapping) else []
        turns = 0
        contents = body.get("contents")
        for content in contents if isinstance(contents, list) else ():
            if not isinstance(content, Mapping):
                continue
            parts = content.get("parts")
            pieces += _part_texts(parts)
            if content.get("role", "user") == "user" and not _only_responses(parts):
                turns += 1
        tools = body.get("tools")
        found = _MODEL.search(path)
        return RequestFacts(
            model=found.group(1) if found else string(body.get("model")),
            stream=":streamGenerateContent" in path,
            prompt="\n".join(p for p in pieces if p),
            user_turns=turns,
            tools=isinstance(tools, list)
            and any(isinstance(t, Mapping) and t.get("functionDeclarations") for t in tools),
        )

    def answer(self, body: Mapping[str, Any]) -> Answer | None:
        candidates = body.get("candidates")
        if not isinstance(candidates, list) and "usageMetadata" not in body:
            return None
        state = StreamState()
        self.event(state, body, 0.0)
        return Answer(
            text="".join(state.text) if state.text else None,
            tool_calls=state.tool_calls(),
            model=state.model,
            usage=gemini_usage(body.get("usageMetadata")),
            finish_reason=state.finish_reason,
        )

    def event(self, state: StreamState, event: Mapping[str, Any], offset: float) -> None:
        state.see_model(event.get("modelVersion"))
        state.set_usage(event.get("usageMetadata"))
        candidates = event.get("candidates")
        first = candidates[0] if isinstance(candidates, list) and candidates else None
        if not isinstance(first, Mapping):
            return
        content = first.get("content")
        parts = content.get("parts") if isinstance(content, Mapping) else None
        for part in parts if isinstance(parts, list) else ():
            if not isinstance(part, Mapping) or part.get("thought") is True:
                continue
            state.content(part.get("text"), offset)
            call = part.get("functionCall")
            if isinstance(call, Mapping):
                arguments = msgspec.json.encode(call.get("args", {})).decode()
                state.tool(len(state.tools), call.get("name"), arguments)
        state.finish(first.get("finishReason"))

    def usage(self, usage: object) -> Counts | None:
        return gemini_usage(usage)


def _part_texts(parts: object) -> list[str]:
    texts: list[str] = []
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, Mapping):
            continue
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif isinstance(part.get("functionResponse"), Mapping):
            texts.append(msgspec.json.encode(part["functionResponse"].get("response")).decode())
    return texts


def _only_responses(parts: object) -> bool:
    return (
        isinstance(parts, list)
        and bool(parts)
        and all(isinstance(p, Mapping) and "functionResponse" in p for p in parts)
    )


GEMINI: Final = GeminiFormat()
