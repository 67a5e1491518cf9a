"""OpenAI Chat Completions (``/v1/chat/completions``, and Azure OpenAI's deployment path).

Request: ``model``, ``stream``, ``messages`` (content a string or text parts; tool results are
``role: "tool"`` messages), ``tools`` (or the older ``functions``). Answer:
``choices[0].message`` (``content``, ``tool_calls[].function``), ``model``, ``usage``
(``prompt_tokens``, ``completion_tokens``, ``prompt_tokens_details.cached_tokens``,
``completion_tokens_details.reasoning_tokens``; a LiteLLM proxy's top-level
``cache_creation_input_tokens`` is read as cache writes). Stream: chunks whose
``choices[0].delta`` carries ``content`` and ``tool_calls`` by index, ending in ``[DONE]``, with
the usage chunk ``stream_options.include_usage`` adds. Only the choice with ``index`` 0 is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from shadow.wire.formats.base import Answer, Counts, RequestFacts, StreamState, count, string
from shadow.wire.tokens import prompt_text

__all__ = ["CHAT", "ChatFormat", "chat_usage", "content_text", "first_choice"]


def content_text(content: object) -> str | None:
    """Message content: a string, or the text of a list of parts (some servers send those)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            p["text"] for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str)
        ]
        return "".join(texts) if texts else None
    return None


def first_choice(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The choice with ``index`` 0 (a missing index counts as 0), or None."""
    choices = body.get("choices")
    if not isinstance(choices, list):
        return None
    for choice in choices:
        if isinstance(choice, Mapping) and choice.get("index", 0) == 0:
            return choice
    return None


def chat_usage(usage: object) -> Counts | None:
    """Counts of a Chat Completions / Completions ``usage`` object (or Responses' naming)."""
    if not isinstance(usage, Mapping):
        return None
    prompt = count(usage.get("prompt_tokens"))
    if prompt is None:
        prompt = count(usage.get("input_tokens"))
    completion = count(usage.get("completion_tokens"))
    if completion is None:
        completion = count(usage.get("output_tokens"))
    if prompt is None and completion is None:
        return None
    cached = reasoning = None
    for key in ("prompt_tokens_details", "input_tokens_details"):
        details = usage.get(key)
        if isinstance(details, Mapping) and cached is None:
            cached = count(details.get("cached_tokens"))
    for key in ("completion_tokens_details", "output_tokens_details"):
        details = usage.get(key)
        if isinstance(details, Mapping) and reasoning is None:
            reasoning = count(details.get("reasoning_tokens"))
    return Counts(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        cache_write_tokens=count(usage.get("cache_creation_input_tokens")),
        reasoning_tokens=reasoning,
    )


class ChatFormat:
    """OpenAI Chat Completions (module docstring)."""

    name: Final = "openai_chat"
    family: Final = "openai"

    def request(self, body: Mapping[str, Any], path: str = "") -> RequestFacts:
        messages = body.get("messages")
        turns = 0
        if isinstance(messages, list):
            turns = sum(1 for m in messages if isinstance(m, Mapping) and m.get("role") == "user")
        return RequestFacts(
            model=string(body.get("model")),
            stream=body.get("stream") is True,
            prompt=prompt_text(body),
            user_turns=turns,
            tools=bool(body.get("tools") or body.get("functions")),
        )

    def answer(self, body: Mapping[str, Any]) -> Answer | None:
        choice = first_choice(body)
        if choice is None:
            return None
        message = choice.get("message")
        finish = string(choice.get("finish_reason"))
        model, usage = string(body.get("model")), chat_usage(body.get("usage"))
        if not isinstance(message, Mapping):  # a legacy completion's choice on this path
            text = choice.get("text")
            return Answer(
                text=text if isinstance(text, str) else None,
                model=model,
                usage=usage,
                finish_reason=finish,
            )
        calls: list[dict[str, str]] = []
        raw = message.get("tool_calls")
        for call in raw if isinstance(raw, list) else ():
            function = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(function, Mapping):
                calls.append(_call(function))
        legacy = message.get("function_call")
        if isinstance(legacy, Mapping):
            calls.append(_call(legacy))
        return Answer(
            text=content_text(message.get("content")),
            tool_calls=calls,
            model=model,
            usage=usage,
            finish_reason=finish,
        )

    def event(self, state: StreamState, event: Mapping[str, Any], offset: float) -> None:
        state.see_model(event.get("model"))
        state.set_usage(event.get("usage"))
        choices = event.get("choices")
        if not isinstance(choices, list):
            return
        for choice in choices:
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue  # with n > 1 each chunk carries one choice; summarise the first
            delta = choice.get("delta")
            if isinstance(delta, Mapping):
                state.content(delta.get("content"), offset)
                calls = delta.get("tool_calls")
                for call in calls if isinstance(calls, list) else ():
                    if not isinstance(call, Mapping):
                        continue
                    index, function = call.get("index", 0), call.get("function")
                    if isinstance(index, int) and isinstance(function, Mapping):
                        state.tool(index, function.get("name"), function.get("arguments"))
            else:
                state.content(choice.get("text"), offset)
            state.finish(choice.get("finish_reason"))

    def usage(self, usage: object) -> Counts | None:
        return chat_usage(usage)


def _call(function: Mapping[str, Any]) -> dict[str, str]:
    name, arguments = function.get("name"), function.get("arguments")
    return {
        "name": name if isinstance(name, str) else "",
        "arguments": arguments if isinstance(arguments, str) else "",
    }


CHAT: Final = ChatFormat()
