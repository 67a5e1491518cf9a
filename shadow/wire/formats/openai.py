"""Any OpenAI format, told apart by the bodies' shapes: what shadow read before it knew paths.

Used when no path or format is given, and for a path that names no known endpoint (an
OpenAI-compatible server's own route). A request with ``messages`` is Chat Completions, one
with ``prompt`` Completions, else Responses (``input``, ``instructions``). An answer with
``choices`` is Chat Completions (or Completions, read alike), with ``output`` Responses, with
``data`` Embeddings. A stream event whose ``type`` starts with ``response.`` is a Responses
event, any other a Chat Completions (or Completions) chunk.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from shadow.wire.formats.base import Answer, Counts, RequestFacts, StreamState
from shadow.wire.formats.openai_chat import CHAT, chat_usage
from shadow.wire.formats.openai_completions import COMPLETIONS
from shadow.wire.formats.openai_embeddings import EMBEDDINGS
from shadow.wire.formats.openai_responses import RESPONSES

__all__ = ["OPENAI", "OpenAIFormat"]


class OpenAIFormat:
    """Any OpenAI format (module docstring)."""

    name: Final = "openai"
    family: Final = "openai"

    def request(self, body: Mapping[str, Any], path: str = "") -> RequestFacts:
        if "messages" in body:
            return CHAT.request(body, path)
        if "prompt" in body:
            return COMPLETIONS.request(body, path)
        return RESPONSES.request(body, path)

    def answer(self, body: Mapping[str, Any]) -> Answer | None:
        if isinstance(body.get("choices"), list):
            return CHAT.answer(body)
        if isinstance(body.get("output"), list):
            return RESPONSES.answer(body)
        if isinstance(body.get("data"), list):
            return EMBEDDINGS.answer(body)
        return None

    def event(self, state: StreamState, event: Mapping[str, Any], offset: float) -> None:
        kind = event.get("type")
        if isinstance(kind, str) and kind.startswith("response."):
            RESPONSES.event(state, event, offset)
        else:
            CHAT.event(state, event, offset)

    def usage(self, usage: object) -> Counts | None:
        return chat_usage(usage)


OPENAI: Final = OpenAIFormat()
