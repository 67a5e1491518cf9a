"""Token usage and output text of a captured exchange, in the exchange's wire format.

The format (:mod:`shadow.wire.formats`) is the one named, else the one of the request's path,
else any OpenAI format told apart by shape; a reassembled stream carries its own. Reported
usage is read under the one usage convention (:mod:`shadow.wire.formats.base`):
``prompt_tokens`` all input, cache reads and writes included; ``cached_tokens`` the cache reads;
``cache_write_tokens`` the cache writes; ``completion_tokens`` all output; ``reasoning_tokens``
where reported. ``model`` is the model the response reports, else the requested one.

When a successful completion reports no usage (a stream without ``include_usage``, an upstream
that is shaped like an API but does not report usage), the counts are estimated with the
documented rule of :mod:`shadow.wire.tokens` and the :class:`~shadow.trace.record.Usage` is
flagged ``estimated``: prompt tokens from the request's prompt text (the format's
:attr:`~shadow.wire.formats.base.RequestFacts.prompt`), completion tokens from the output's
content plus its tool-call names and arguments.

Nothing here raises on malformed input; what cannot be read is left out (None).
"""

from __future__ import annotations

from typing import Any

import msgspec

from shadow.trace.record import Usage
from shadow.wire.formats.base import Counts, FormatName, WireFormat
from shadow.wire.formats.registry import format_for
from shadow.wire.sse import StreamSummary
from shadow.wire.tokens import count_tokens

__all__ = ["extract_usage", "output_text", "usage_of"]


def extract_usage(
    request_body: bytes,
    response_body: bytes | None,
    stream: StreamSummary | None,
    status: int,
    *,
    path: str | None = None,
    fmt: FormatName | WireFormat | None = None,
) -> Usage | None:
    """The exchange's token usage: reported, else estimated for a 2xx completion.

    Args:
        request_body: the request as the client sent it.
        response_body: the upstream's body when it was not streamed (ignored when ``stream``
            is given).
        stream: the reassembled response when it was Server-Sent Events (read in its own
            :attr:`~shadow.wire.sse.StreamSummary.format` unless ``fmt`` is given).
        status: the upstream's HTTP status.
        path: the request's path, which picks the format (the query is ignored).
        fmt: the format's name, or the format; wins over ``path``.

    Returns:
        A :class:`~shadow.trace.record.Usage`; for a non-2xx or non-JSON response only its ``model``
        (the requested one) is set, and when that is unknown too the result is None.
    """
    if stream is not None and fmt is None:
        fmt = stream.format
    wire = format_for(path, fmt)
    request = _json_object(request_body)
    facts = wire.request(request, path or "") if request is not None else None
    requested = facts.model if facts is not None else None
    if not 200 <= status <= 299:
        return Usage(model=requested) if requested else None
    texts: list[str] | None
    if stream is not None:
        model = stream.model or requested
        reported = wire.usage(stream.usage)
        texts = None if reported or not stream.events else _texts(stream.text, stream.tool_calls)
    else:
        response = _json_object(response_body) if response_body is not None else None
        answer = wire.answer(response) if response is not None else None
        if answer is None:
            return Usage(model=requested) if requested else None
        model = answer.model or requested
        reported = answer.usage
        texts = None
        if not reported and answer.completion:
            texts = _texts(answer.text or "", answer.tool_calls)
    if reported is not None and reported.reported:
        return usage_of(reported, model)
    if texts is None:  # not a completion: an empty stream, a model list, an embeddings body
        return Usage(model=model) if model else None
    return Usage(
        model=model,
        prompt_tokens=count_tokens(facts.prompt) if facts is not None else None,
        completion_tokens=sum(count_tokens(text) for text in texts),
        estimated=True,
    )


def usage_of(counts: Counts, model: str | None) -> Usage:
    """A reported :class:`~shadow.wire.formats.base.Counts` as a record's Usage."""
    return Usage(
        model=model,
        prompt_tokens=counts.prompt_tokens,
        completion_tokens=counts.completion_tokens,
        cached_tokens=counts.cached_tokens,
        cache_write_tokens=counts.cache_write_tokens,
        reasoning_tokens=counts.reasoning_tokens,
    )


def output_text(
    response_body: bytes,
    stream: StreamSummary | None,
    *,
    path: str | None = None,
    fmt: FormatName | WireFormat | None = None,
) -> str | None:
    """The assistant's output as one text, or None when the body is not a completion.

    The content is ``stream.text`` when given; otherwise the answer's text in its format (chat
    ``choices[0].message.content``, legacy ``choices[0].text``, the Responses API's
    ``output[*].content[*].text``, Anthropic's ``text`` blocks, Gemini's ``text`` parts). When
    the model called tools, the output is instead a JSON document,
    ``{"content": ..., "tool_calls": [{"name": ..., "arguments": ...}]}`` (arguments parsed when
    they are JSON, in call order), so divergence compares tool names and arguments structurally
    whichever API answered.
    """
    if stream is not None:
        return _with_tool_calls(stream.text, stream.tool_calls)
    response = _json_object(response_body)
    answer = format_for(path, fmt).answer(response) if response is not None else None
    if answer is None:
        return None
    return _with_tool_calls(answer.text, answer.tool_calls)


def _with_tool_calls(text: str | None, calls: list[dict[str, str]]) -> str | None:
    if not calls:
        return text
    parsed: list[dict[str, Any]] = []
    for call in calls:
        arguments = call.get("arguments", "")
        try:
            value: Any = msgspec.json.decode(arguments) if arguments else None
        except (ValueError, RecursionError):
            value = arguments
        parsed.append({"name": call.get("name", ""), "arguments": value})
    return msgspec.json.encode({"content": text, "tool_calls": parsed}).decode()


def _texts(text: str, calls: list[dict[str, str]]) -> list[str]:
    """Everything the model generated: content, tool-call names and arguments."""
    texts = [text]
    for call in calls:
        texts += [call.get("name", ""), call.get("arguments", "")]
    return texts


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = msgspec.json.decode(body)
    except (ValueError, RecursionError):  # DecodeError, UnicodeDecodeError, deep nesting
        return None
    return value if isinstance(value, dict) else None
