"""An arm's answer in the common form, whichever API gave it, so arms compare directly.

:func:`read_answer` reads an OpenAI (or Azure OpenAI), Anthropic Messages or Gemini
generateContent answer, JSON or Server-Sent Events, into an :class:`Answer`:

- ``output_text``: the text, or, when the model called tools, the JSON document
  ``{"content": ..., "tool_calls": [{"name": ..., "arguments": ...}]}`` that
  :func:`shadow.wire.usage.output_text` gives for OpenAI answers (arguments parsed);
- ``model``: the model the answer reports (Anthropic's ``model``, Gemini's ``modelVersion``),
  else the one asked for;
- usage as OpenAI counts it: ``prompt_tokens`` all input (Anthropic's ``input_tokens`` +
  ``cache_read_input_tokens`` + ``cache_creation_input_tokens``; Gemini's
  ``promptTokenCount``, which includes its cached content), ``cached_tokens`` the cache reads
  (``cache_read_input_tokens``, ``cachedContentTokenCount``), ``cache_write_tokens`` the
  writes (``cache_creation_input_tokens``), ``completion_tokens`` all output (Gemini's
  ``candidatesTokenCount`` + ``thoughtsTokenCount``), ``reasoning_tokens`` the thoughts;
  a stream's figures are its last report (Anthropic's ``message_delta`` usage is cumulative);
- ``ttft_ms`` at the first event carrying answer text or a tool call (not ``message_start``,
  a ``ping`` or a thought), ``chunk_offsets_ms`` of every such event.

Every API's answer is read by its wire format (:mod:`shadow.wire.formats`, through
:func:`~shadow.wire.usage.extract_usage`, :func:`~shadow.wire.usage.output_text` and
:func:`~shadow.wire.sse.reassemble`): one reader per API, shared with capture. Nothing raises on
bad input: :attr:`Answer.parsed` is false.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from shadow.wire.formats import FormatName
from shadow.wire.routes import Api
from shadow.wire.sse import reassemble
from shadow.wire.usage import extract_usage, output_text

__all__ = ["Answer", "read_answer"]


@dataclass(kw_only=True, slots=True)
class Answer:
    """What an answer said, in the common form (see the module docstring)."""

    parsed: bool = False
    """A 2xx body that is a well-formed answer of its API (every stream event readable)."""
    output_text: str | None = None
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    ttft_ms: float | None = None
    chunk_offsets_ms: list[float] | None = None


_FORMAT: Final[dict[Api, FormatName | None]] = {
    "openai": None,  # any OpenAI format, told apart by shape
    "azure": None,
    "anthropic": "anthropic",
    "gemini": "gemini",
}


def read_answer(
    api: Api,
    status: int,
    body: bytes,
    chunks: Sequence[tuple[float, bytes]] = (),
    *,
    request_body: bytes = b"",
    requested_model: str | None = None,
) -> Answer:
    """The answer of ``api`` (``chunks`` of ``(offset_ms, bytes)`` when it streamed)."""
    fmt = _FORMAT[api]
    stream = reassemble(chunks, fmt=fmt) if chunks else None
    answer = Answer(model=requested_model)
    if stream is not None:
        answer.ttft_ms, answer.chunk_offsets_ms = stream.ttft_ms, stream.chunk_offsets_ms
    usage = extract_usage(request_body, body if stream is None else None, stream, status, fmt=fmt)
    if usage is not None:
        answer.model = usage.model or requested_model
        answer.prompt_tokens = usage.prompt_tokens
        answer.completion_tokens = usage.completion_tokens
        answer.cached_tokens = usage.cached_tokens
        answer.cache_write_tokens = usage.cache_write_tokens
        answer.reasoning_tokens = usage.reasoning_tokens
    if 200 <= status <= 299:
        answer.output_text = output_text(body, stream, fmt=fmt)
        if stream is not None:
            answer.parsed = stream.events > 0 and stream.malformed == 0 and stream.error is None
        else:
            answer.parsed = _object(body) is not None
    return answer


def _object(body: bytes) -> dict[str, Any] | None:
    try:
        value = msgspec.json.decode(body) if body else None
    except (msgspec.DecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
