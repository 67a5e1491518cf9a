"""The interface every wire format implements, and the pieces they share.

A :class:`WireFormat` says, for one API's request and response bodies:

- what the request asks (:meth:`WireFormat.request` → :class:`RequestFacts`: the model, whether
  it streams, the prompt text that token estimates count, the number of user turns, whether it
  defines tools);
- what a whole (not streamed) answer says (:meth:`WireFormat.answer` → :class:`Answer`: text,
  tool calls, the model the response reports, usage, finish reason);
- how a stream is reassembled (:meth:`WireFormat.event`, called by
  :func:`shadow.wire.sse.reassemble` with each decoded JSON event, writes into a
  :class:`StreamState`);
- where usage is and what it means (:meth:`WireFormat.usage` → :class:`Counts` under the one
  convention below, from the ``usage`` object of a body or of a reassembled stream).

The one usage convention (docs/architecture.md, "TraceRecord v1"): ``prompt_tokens`` counts all
input, cache reads and cache writes included (as OpenAI counts it), ``cached_tokens`` the cache
reads, ``cache_write_tokens`` the cache writes, ``completion_tokens`` all output (reasoning
included, as OpenAI counts it), ``reasoning_tokens`` the reasoning part where reported.

Content, for TTFT and chunk offsets, is answer text only: a role-only chunk, ``message_start``,
``content_block_start``, tool-call argument deltas and reasoning deltas are not content.

Nothing here raises on malformed input: what cannot be read is left out (None).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = [
    "Answer",
    "Counts",
    "Family",
    "FormatName",
    "RequestFacts",
    "StreamState",
    "WireFormat",
    "count",
    "string",
]

FormatName = Literal[
    "anthropic",
    "gemini",
    "openai",
    "openai_chat",
    "openai_completions",
    "openai_embeddings",
    "openai_responses",
]
"""A format's name; ``openai`` is any OpenAI format, told apart by the bodies' shapes."""

Family = Literal["anthropic", "gemini", "openai"]
"""The API family a format belongs to (Azure OpenAI is ``openai`` on another path)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RequestFacts:
    """What a request asks."""

    model: str | None = None
    """The requested model (Gemini's is read from the path)."""
    stream: bool = False
    """Whether the request asks for a stream (Gemini's path says: ``:streamGenerateContent``)."""
    prompt: str = ""
    """The text a token estimate counts: system prompt, every message's text, tool results."""
    user_turns: int = 0
    """Messages (turns) from the user role."""
    tools: bool = False
    """Whether the request defines tools (functions) the model may call."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Counts:
    """Token counts under the one usage convention (module docstring); None: not reported."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None

    @property
    def reported(self) -> bool:
        """Whether the prompt or the completion count is known."""
        return self.prompt_tokens is not None or self.completion_tokens is not None


@dataclass(frozen=True, kw_only=True, slots=True)
class Answer:
    """What a whole (not streamed) response body says."""

    text: str | None = None
    """The answer's text (None: the response has no text content)."""
    tool_calls: list[dict[str, str]] = field(default_factory=list)
    """One ``{"name": ..., "arguments": ...}`` per tool call, in order (arguments as JSON text)."""
    model: str | None = None
    """The model the response reports."""
    usage: Counts | None = None
    finish_reason: str | None = None
    completion: bool = True
    """Whether the body is a generated answer whose tokens can be estimated (an embeddings
    response is not)."""


class StreamState:
    """What a stream said so far; a format's :meth:`WireFormat.event` writes into it."""

    __slots__ = ("error", "finish_reason", "model", "offsets", "text", "tools", "usage")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.offsets: list[float] = []
        self.tools: dict[int, list[str]] = {}  # index -> [name, arguments]
        self.usage: dict[str, Any] | None = None
        self.model: str | None = None
        self.finish_reason: str | None = None
        self.error: str | None = None
        """The error an event of the stream reported (Anthropic's ``error`` event): the stream
        is then not an answer, whatever came before it."""

    def content(self, piece: object, offset: float) -> None:
        """A piece of answer text that arrived at ``offset`` (empty and non-text ignored)."""
        if isinstance(piece, str) and piece:
            self.text.append(piece)
            self.offsets.append(offset)

    def tool(self, index: int, name: object = None, arguments: object = None) -> None:
        """A tool call's name (set once; a repeated name is not doubled) and argument text."""
        slot = self.tools.setdefault(index, ["", ""])
        if isinstance(name, str) and name != slot[0]:
            slot[0] += name
        if isinstance(arguments, str):
            slot[1] += arguments

    def see_model(self, model: object) -> None:
        """The model a stream reports (the first one named wins)."""
        if self.model is None and isinstance(model, str) and model:
            self.model = model

    def set_usage(self, usage: object, *, merge: bool = False) -> None:
        """The stream's usage object: replaced, or with ``merge`` updated key by key."""
        if isinstance(usage, dict):
            self.usage = {**self.usage, **usage} if merge and self.usage else dict(usage)

    def finish(self, reason: object) -> None:
        """Why the answer ended, when a non-empty reason is given."""
        if isinstance(reason, str) and reason:
            self.finish_reason = reason

    def tool_calls(self) -> list[dict[str, str]]:
        """The tool calls, by index."""
        return [{"name": n, "arguments": a} for _, (n, a) in sorted(self.tools.items())]


class WireFormat(Protocol):
    """One API's request and response formats (module docstring)."""

    @property
    def name(self) -> FormatName:
        """The format's name."""
        ...

    @property
    def family(self) -> Family:
        """The API family."""
        ...

    def request(self, body: Mapping[str, Any], path: str = "") -> RequestFacts:
        """What the request ``body`` (a decoded JSON object) sent to ``path`` asks."""
        ...

    def answer(self, body: Mapping[str, Any]) -> Answer | None:
        """What a whole response ``body`` says; None when it is not this format's answer."""
        ...

    def event(self, state: StreamState, event: Mapping[str, Any], offset: float) -> None:
        """Fold one decoded stream event, arrived at ``offset`` ms, into ``state``."""
        ...

    def usage(self, usage: object) -> Counts | None:
        """The counts of a usage object (a body's, or a stream's merged one); None if none."""
        ...


def count(value: object) -> int | None:
    """A token count: a non-negative int (not a bool), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def string(value: object) -> str | None:
    """A non-empty string, else None."""
    return value if isinstance(value, str) and value else None
