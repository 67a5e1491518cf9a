"""Reassemble an OpenAI-style Server-Sent-Events response from the raw chunks the sidecar saw.

The sidecar forwards upstream bytes untouched and keeps a copy of each chunk with its arrival
offset (milliseconds after the first request byte). :func:`reassemble` parses that copy after
the fact, per the SSE specification (WHATWG HTML, "Server-sent events", parsing an event
stream): lines end in ``\\n``, ``\\r\\n`` or ``\\r``, even when a chunk boundary falls between
the ``\\r`` and the ``\\n``; a line starting with ``:`` is a comment; several ``data:`` lines
of one event join with ``\\n``; a blank line dispatches the event; an event the stream ends in
the middle of is discarded. ``data: [DONE]`` ends an OpenAI stream; anything after it is ignored.

Understood payloads:

- chat completion chunks: ``choices[i].delta.content`` and ``delta.tool_calls`` (of the choice
  with ``index`` 0), ``finish_reason``, ``model``, and the ``usage`` chunk that
  ``stream_options.include_usage`` adds;
- legacy completion chunks: ``choices[i].text``;
- Responses API events: ``response.output_text.delta``, function calls from
  ``response.output_item.done``, and model and usage from ``response.completed`` (or
  ``response.incomplete`` / ``response.failed``), whose ``incomplete_details.reason`` or else
  ``status`` becomes the finish reason.

Nothing here raises on bad input: a payload that is not a JSON object is counted in
:attr:`StreamSummary.malformed` and skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

__all__ = ["StreamSummary", "is_event_stream", "reassemble"]

_BOM = b"\xef\xbb\xbf"
_DONE = b"[DONE]"
_RESPONSE_END_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamSummary:
    """What a streamed completion said, and when each piece of its content arrived."""

    text: str = ""
    """The content, concatenated (tool-call arguments are in :attr:`tool_calls`, not here)."""
    tool_calls: list[dict[str, str]] = field(default_factory=list)
    """One ``{"name": ..., "arguments": ...}`` per tool call, assembled from deltas by index."""
    chunk_offsets_ms: list[float] = field(default_factory=list)
    """Arrival offset of each event that carried non-empty content, in order."""
    ttft_ms: float | None = None
    """Arrival offset of the first content event; None when no content arrived."""
    usage: dict[str, Any] | None = None
    """The ``usage`` object of the last event that had one (the final usage chunk)."""
    model: str | None = None
    finish_reason: str | None = None
    events: int = 0
    """Dispatched events that had data, including ``[DONE]`` and malformed ones."""
    done: bool = False
    """The stream sent ``data: [DONE]``."""
    malformed: int = 0
    """Data payloads that were not a JSON object."""


def is_event_stream(content_type: str) -> bool:
    """Whether a Content-Type header value names ``text/event-stream`` (parameters ignored)."""
    return content_type.partition(";")[0].strip().lower() == "text/event-stream"


def reassemble(chunks: Sequence[tuple[float, bytes]]) -> StreamSummary:
    """Parse raw SSE ``chunks`` of ``(offset_ms, bytes)`` into a :class:`StreamSummary`.

    An event's arrival time is the offset of the chunk in which its terminating blank line
    arrived. Chunk boundaries may fall anywhere, including inside a line or a UTF-8 character.
    """
    state = _State()
    pending: list[bytes] = []  # the start of a line whose terminator has not arrived yet
    skip_lf = False  # the previous chunk ended in "\r": a leading "\n" completes that "\r\n"
    for offset, chunk in chunks:
        if not chunk:
            continue
        if skip_lf:
            skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
                if not chunk:
                    continue
        if b"\n" not in chunk and b"\r" not in chunk:
            pending.append(chunk)  # no line ends here; joining later keeps a long line linear
            continue
        if pending:
            pending.append(chunk)
            chunk = b"".join(pending)
            pending = []
        lines = chunk.splitlines(keepends=True)  # bytes split on \n, \r\n and \r only
        if lines[-1][-1:] not in (b"\n", b"\r"):
            pending.append(lines.pop())
        skip_lf = chunk[-1:] == b"\r"
        for line in lines:
            state.line(line.rstrip(b"\r\n"), offset)
            if state.done:
                return state.summary()
    return state.summary()  # a trailing unterminated line or event is discarded, per the spec


class _State:
    """The parser's and the summariser's running state for one stream."""

    __slots__ = (
        "data",
        "done",
        "events",
        "finish_reason",
        "first_line",
        "malformed",
        "model",
        "offsets",
        "text",
        "tools",
        "usage",
    )

    def __init__(self) -> None:
        self.first_line = True
        self.data: list[bytes] = []
        self.events = 0
        self.done = False
        self.malformed = 0
        self.text: list[str] = []
        self.offsets: list[float] = []
        self.tools: dict[int, list[str]] = {}  # index -> [name, arguments]
        self.usage: dict[str, Any] | None = None
        self.model: str | None = None
        self.finish_reason: str | None = None

    def summary(self) -> StreamSummary:
        return StreamSummary(
            text="".join(self.text),
            tool_calls=[
                {"name": name, "arguments": arguments}
                for _, (name, arguments) in sorted(self.tools.items())
            ],
            chunk_offsets_ms=self.offsets,
            ttft_ms=self.offsets[0] if self.offsets else None,
            usage=self.usage,
            model=self.model,
            finish_reason=self.finish_reason,
            events=self.events,
            done=self.done,
            malformed=self.malformed,
        )

    # -- the SSE line protocol ----------------------------------------------------------------

    def line(self, line: bytes, offset: float) -> None:
        if self.first_line:
            self.first_line = False
            if line.startswith(_BOM):
                line = line[len(_BOM) :]
        if not line:
            self.dispatch(offset)
            return
        if line[0] == 0x3A:  # ":" starts a comment (keep-alives, provider notes)
            return
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self.data.append(value)
        # "id" and "retry" matter to a reconnecting browser, not to a captured exchange; "event"
        # names are not needed: the Responses API repeats them in the payload's "type".

    def dispatch(self, offset: float) -> None:
        data, self.data = self.data, []
        if not data:
            return
        self.events += 1
        payload = data[0] if len(data) == 1 else b"\n".join(data)
        if payload == _DONE:
            self.done = True
            return
        try:
            obj = msgspec.json.decode(payload)
        except (ValueError, RecursionError):  # DecodeError, UnicodeDecodeError, deep nesting
            obj = None
        if not isinstance(obj, dict):
            self.malformed += 1
            return
        kind = obj.get("type")
        if isinstance(kind, str) and kind.startswith("response."):
            self.responses_event(kind, obj, offset)
        else:
            self.completion_chunk(obj, offset)

    # -- payloads -----------------------------------------------------------------------------

    def content(self, piece: object, offset: float) -> None:
        if isinstance(piece, str) and piece:
            self.text.append(piece)
            self.offsets.append(offset)

    def completion_chunk(self, obj: dict[str, Any], offset: float) -> None:
        model = obj.get("model")
        if self.model is None and isinstance(model, str) and model:
            self.model = model
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        choices = obj.get("choices")
        if not isinstance(choices, list):
            return
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # with n > 1 each chunk carries one choice; summarise the first
            delta = choice.get("delta")
            if isinstance(delta, dict):
                self.content(delta.get("content"), offset)
                calls = delta.get("tool_calls")
                if isinstance(calls, list):
                    self.tool_call_deltas(calls)
            else:
                self.content(choice.get("text"), offset)
            finish = choice.get("finish_reason")
            if isinstance(finish, str) and finish:
                self.finish_reason = finish

    def tool_call_deltas(self, calls: list[Any]) -> None:
        for call in calls:
            if not isinstance(call, dict):
                continue
            index = call.get("index", 0)
            function = call.get("function")
            if not isinstance(index, int) or not isinstance(function, dict):
                continue
            slot = self.tools.setdefault(index, ["", ""])
            name = function.get("name")
            # OpenAI sends the name once; some servers repeat it in every delta.
            if isinstance(name, str) and name != slot[0]:
                slot[0] += name
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                slot[1] += arguments

    def responses_event(self, kind: str, obj: dict[str, Any], offset: float) -> None:
        if kind == "response.output_text.delta":
            self.content(obj.get("delta"), offset)
        elif kind == "response.output_item.done":
            item = obj.get("item")
            if isinstance(item, dict) and item.get("type") == "function_call":
                name, arguments = item.get("name"), item.get("arguments")
                self.tools[len(self.tools)] = [
                    name if isinstance(name, str) else "",
                    arguments if isinstance(arguments, str) else "",
                ]
        elif kind in _RESPONSE_END_EVENTS or kind == "response.created":
            response = obj.get("response")
            if not isinstance(response, dict):
                return
            model = response.get("model")
            if self.model is None and isinstance(model, str) and model:
                self.model = model
            usage = response.get("usage")
            if isinstance(usage, dict):
                self.usage = usage
            if kind in _RESPONSE_END_EVENTS:
                status = response.get("status")
                details = response.get("incomplete_details")
                reason = details.get("reason") if isinstance(details, dict) else None
                finish = reason if isinstance(reason, str) else status
                if isinstance(finish, str):
                    self.finish_reason = finish
