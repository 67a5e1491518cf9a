"""Token usage and output text of a captured exchange, from OpenAI-format bodies.

Reported usage is taken as is: Chat Completions and legacy Completions name the counts
``prompt_tokens`` / ``completion_tokens`` / ``prompt_tokens_details.cached_tokens``, the
Responses API ``input_tokens`` / ``output_tokens`` / ``input_tokens_details.cached_tokens``;
a stream reports them in its final usage chunk (``stream_options.include_usage``).

When a successful completion reports no usage (a stream without ``include_usage``, an upstream
that is OpenAI-shaped but not OpenAI), the counts are estimated with the documented rule of
:mod:`shadow.wire.tokens` and the :class:`~shadow.trace.record.Usage` is flagged ``estimated``:
prompt tokens from the request's messages (or ``prompt``, or the Responses API's
``instructions`` and ``input``), completion tokens from the output's content plus its tool-call
names and arguments.

Nothing here raises on malformed input; what cannot be read is left out (None).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from shadow.trace.record import Usage
from shadow.wire.sse import StreamSummary
from shadow.wire.tokens import count_tokens, prompt_text

__all__ = ["extract_usage", "output_text"]


def extract_usage(
    request_body: bytes,
    response_body: bytes | None,
    stream: StreamSummary | None,
    status: int,
) -> Usage | None:
    """The exchange's token usage: reported, else estimated for a 2xx completion.

    Args:
        request_body: the request as the client sent it.
        response_body: the upstream's body when it was not streamed (ignored when ``stream``
            is given).
        stream: the reassembled response when it was Server-Sent Events.
        status: the upstream's HTTP status.

    Returns:
        A :class:`~shadow.trace.record.Usage`; for a non-2xx or non-JSON response only its ``model``
        (the requested one) is set, and when that is unknown too the result is None.
    """
    request = _json_object(request_body)
    requested = _string(request.get("model")) if request is not None else None
    if not 200 <= status <= 299:
        return Usage(model=requested) if requested else None
    texts: list[str] | None
    if stream is not None:
        model = stream.model or requested
        reported = _counts(stream.usage)
        texts = None if reported or not stream.events else _stream_texts(stream)
    else:
        response = _json_object(response_body) if response_body is not None else None
        if response is None:
            return Usage(model=requested) if requested else None
        model = _string(response.get("model")) or requested
        reported = _counts(response.get("usage"))
        texts = None if reported else _generated_texts(response)
    if reported is not None:
        prompt, completion, cached = reported
        return Usage(
            model=model, prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached
        )
    if texts is None:  # not a completion: an empty stream, a model list, an error envelope
        return Usage(model=model) if model else None
    return Usage(
        model=model,
        prompt_tokens=count_tokens(_request_text(request)) if request is not None else None,
        completion_tokens=sum(count_tokens(text) for text in texts),
        estimated=True,
    )


def output_text(response_body: bytes, stream: StreamSummary | None) -> str | None:
    """The assistant's output as one text, or None when the body is not a completion.

    The content is ``stream.text`` when given; otherwise the body's chat
    ``choices[0].message.content``, legacy ``choices[0].text``, or the Responses API's
    ``output[*].content[*].text``. When the model called tools, the output is instead a JSON
    document, ``{"content": ..., "tool_calls": [{"name": ..., "arguments": ...}]}`` (arguments
    parsed when they are JSON, in call order), so divergence compares tool names and arguments
    structurally.
    """
    calls: list[tuple[str, str]]
    if stream is not None:
        text: str | None = stream.text
        calls = [(c.get("name", ""), c.get("arguments", "")) for c in stream.tool_calls]
        return _with_tool_calls(text, calls)
    response = _json_object(response_body)
    if response is None:
        return None
    choice = _first_choice(response)
    if choice is not None:
        message = choice.get("message")
        if not isinstance(message, Mapping):
            return _string(choice.get("text"))
        raw = message.get("tool_calls")
        calls = []
        for call in raw if isinstance(raw, list) else ():
            function = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(function, Mapping):
                calls.append((_string(function.get("name")) or "", _arguments(function)))
        return _with_tool_calls(_content_text(message.get("content")), calls)
    output = response.get("output")
    if isinstance(output, list):
        parts = [part for item in output for part in _message_parts(item)]
        calls = [
            (_string(item.get("name")) or "", _arguments(item))
            for item in output
            if isinstance(item, Mapping) and item.get("type") == "function_call"
        ]
        return _with_tool_calls("".join(parts) if parts else None, calls)
    return None


def _arguments(holder: Mapping[str, Any]) -> str:
    value = holder.get("arguments")
    return value if isinstance(value, str) else ""


def _with_tool_calls(text: str | None, calls: list[tuple[str, str]]) -> str | None:
    if not calls:
        return text
    parsed: list[dict[str, Any]] = []
    for name, arguments in calls:
        try:
            value: Any = msgspec.json.decode(arguments) if arguments else None
        except (ValueError, RecursionError):
            value = arguments
        parsed.append({"name": name, "arguments": value})
    return msgspec.json.encode({"content": text, "tool_calls": parsed}).decode()


# -- helpers ----------------------------------------------------------------------------------


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = msgspec.json.decode(body)
    except (ValueError, RecursionError):  # DecodeError, UnicodeDecodeError, deep nesting
        return None
    return value if isinstance(value, dict) else None


def _string(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _count(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _counts(usage: object) -> tuple[int | None, int | None, int | None] | None:
    """(prompt, completion, cached) under either naming; None when no count is readable."""
    if not isinstance(usage, Mapping):
        return None
    prompt = _count(usage.get("prompt_tokens"))
    if prompt is None:
        prompt = _count(usage.get("input_tokens"))
    completion = _count(usage.get("completion_tokens"))
    if completion is None:
        completion = _count(usage.get("output_tokens"))
    cached = None
    for key in ("prompt_tokens_details", "input_tokens_details"):
        details = usage.get(key)
        if isinstance(details, Mapping) and cached is None:
            cached = _count(details.get("cached_tokens"))
    if prompt is None and completion is None:
        return None
    return prompt, completion, cached


def _first_choice(response: Mapping[str, Any]) -> Mapping[str, Any] | None:
    choices = response.get("choices")
    if not isinstance(choices, list):
        return None
    for choice in choices:
        if isinstance(choice, Mapping) and choice.get("index", 0) == 0:
            return choice
    return None


def _content_text(content: object) -> str | None:
    """Chat message content: a string, or a list of text parts (some servers send those)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p["text"] for p in content if isinstance(p, Mapping) and _is_str(p.get("text"))]
        return "".join(texts) if texts else None
    return None


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _message_parts(item: object) -> list[str]:
    """The text parts of one Responses API output item (reasoning items are not output)."""
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


def _stream_texts(stream: StreamSummary) -> list[str]:
    texts = [stream.text]
    for call in stream.tool_calls:
        texts += [call.get("name", ""), call.get("arguments", "")]
    return texts


def _generated_texts(response: Mapping[str, Any]) -> list[str] | None:
    """Everything the model generated (content, tool-call names and arguments), if a completion."""
    choice = _first_choice(response)
    if choice is not None:
        message = choice.get("message")
        if not isinstance(message, Mapping):
            return [_string(choice.get("text")) or ""]
        texts = [_content_text(message.get("content")) or ""]
        calls = message.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            function = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(function, Mapping):
                texts += [_string(function.get(k)) or "" for k in ("name", "arguments")]
        return texts
    output = response.get("output")
    if isinstance(output, list):
        texts = [part for item in output for part in _message_parts(item)]
        for item in output:
            if isinstance(item, Mapping) and item.get("type") == "function_call":
                texts += [_string(item.get(k)) or "" for k in ("name", "arguments")]
        return texts
    return None


def _request_text(request: Mapping[str, Any]) -> str:
    """What the request prompts with: :func:`~shadow.wire.tokens.prompt_text`, and Responses."""
    if "messages" in request or "prompt" in request:
        return prompt_text(request)
    pieces = [_string(request.get("instructions")) or ""]
    given = request.get("input")
    if isinstance(given, str):
        pieces.append(given)
    elif isinstance(given, list):
        for item in given:
            if isinstance(item, str):
                pieces.append(item)
            elif isinstance(item, Mapping):
                content = item.get("content")
                if isinstance(content, str):
                    pieces.append(content)
                elif isinstance(content, list):
                    pieces += [
                        p["text"]
                        for p in content
                        if isinstance(p, Mapping) and isinstance(p.get("text"), str)
                    ]
    return "\n".join(p for p in pieces if p)
