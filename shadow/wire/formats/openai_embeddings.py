"""OpenAI Embeddings (``/v1/embeddings``, and Azure OpenAI's deployment path).

Request: ``model`` and ``input`` (a string or a list of strings; token arrays are not text).
Answer: ``data[].embedding``, ``model``, ``usage.prompt_tokens``; nothing is generated, so the
answer has no text and its tokens are never estimated. Embeddings do not stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from shadow.wire.formats.base import Answer, Counts, RequestFacts, StreamState, string
from shadow.wire.formats.openai_chat import chat_usage

__all__ = ["EMBEDDINGS", "EmbeddingsFormat"]


class EmbeddingsFormat:
    """OpenAI Embeddings (module docstring)."""

    name: Final = "openai_embeddings"
    family: Final = "openai"

    def request(self, body: Mapping[str, Any], path: str = "") -> RequestFacts:
        given = body.get("input")
        texts = [given] if isinstance(given, str) else given if isinstance(given, list) else []
        return RequestFacts(
            model=string(body.get("model")),
            prompt="\n".join(t for t in texts if isinstance(t, str)),
            user_turns=1 if texts else 0,
        )

    def answer(self, body: Mapping[str, Any]) -> Answer | None:
        if not isinstance(body.get("data"), list) and "usage" not in body:
            return None
        return Answer(
            model=string(body.get("model")), usage=chat_usage(body.get("usage")), completion=False
        )

    def event(self, state: StreamState, event: Mapping[str, Any], offset: float) -> None:
        state.see_model(event.get("model"))
        state.set_usage(event.get("usage"))

    def usage(self, usage: object) -> Counts | None:
        return chat_usage(usage)


EMBEDDINGS: Final = EmbeddingsFormat()
