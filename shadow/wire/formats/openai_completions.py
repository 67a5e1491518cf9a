"""OpenAI legacy Completions (``/v1/completions``, and Azure OpenAI's deployment path).

Request: ``model``, ``stream``, ``prompt`` (a string or a list of them; one user turn).
Answer: ``choices[0].text``, ``model``, ``usage`` as Chat Completions names it. Stream: chunks
whose ``choices[0].text`` carries the content, ending in ``[DONE]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from shadow.wire.formats.base import Answer, Counts, RequestFacts, StreamState, string
from shadow.wire.formats.openai_chat import chat_usage, first_choice
from shadow.wire.tokens import prompt_text

__all__ = ["COMPLETIONS", "CompletionsFormat"]


class CompletionsFormat:
    """OpenAI legacy Completions (module docstring)."""

    name: Final = "openai_completions"
    family: Final = "openai"

    def request(self, body: Mapping[str, Any], path: str = "") -> RequestFacts:
        return RequestFacts(
            model=string(body.get("model")),
            stream=body.get("stream") is True,
            prompt=prompt_text(body),
            user_turns=1 if "prompt" in body else 0,
            tools=False,
        )

    def answer(self, body: Mapping[str, Any]) -> Answer | None:
        choice = first_choice(body)
        if choice is None:
            return None
        text = choice.get("text")
        return Answer(
            text=text if isinstance(text, str) else None,
            model=string(body.get("model")),
            usage=chat_usage(body.get("usage")),
            finish_reason=string(choice.get("finish_reason")),
        )

    def event(self, state: StreamState, event: Mapping[str, Any], offset: float) -> None:
        state.see_model(event.get("model"))
        state.set_usage(event.get("usage"))
        choice = first_choice(event)
        if choice is not None:
            state.content(choice.get("text"), offset)
            state.finish(choice.get("finish_reason"))

    def usage(self, usage: object) -> Counts | None:
        return chat_usage(usage)


COMPLETIONS: Final = CompletionsFormat()
