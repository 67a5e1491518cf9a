"""Reassemble a Server-Sent-Events response from the raw chunks the sidecar saw.

The sidecar forwards upstream bytes untouched and keeps a copy of each chunk with its arrival
offset (milliseconds after the first request byte). :func:`reassemble` parses that copy after
the fact, per the SSE specification (WHATWG HTML, "Server-sent events", parsing an event
stream): lines end in ``\\n``, ``\\r\\n`` or ``\\r``, even when a chunk boundary falls between
the ``\\r`` and the ``\\n``; a line starting with ``:`` is a comment; several ``data:`` lines
of one event join with ``\\n``; a blank line dispatches the event; an event the stream ends in
the middle of is discarded. ``data: [DONE]`` ends an OpenAI stream; anything after it is ignored.

Each event's JSON payload goes to the stream's wire format (:mod:`shadow.wire.formats`, picked
by the request's path or named; OpenAI's by shape when neither is given), which says what it
carries: OpenAI chat and legacy completion chunks and Responses API events, Anthropic Messages
events (``message_start`` … ``message_stop``), Gemini ``streamGenerateContent?alt=sse`` chunks.
``event:`` lines are not needed: every one of these APIs repeats the event's kind in its payload.
Content, whose first piece is the TTFT, is answer text only (see
:mod:`shadow.wire.formats.base`).

Nothing here raises on bad input: a payload that is not a JSON object is counted in
:attr:`StreamSummary.malformed` and skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from shadow.wire.formats.base import FormatName, StreamState, WireFormat
from shadow.wire.formats.registry import format_for

__all__ = ["StreamSummary", "is_event_stream", "reassemble"]

_BOM = b"\xef\xbb\xbf"
_DONE = b"[DONE]"


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
    """The stream's usage object in its format's naming: the last one an event carried
    (Anthropic's: ``message_start``'s, updated by each ``message_delta``'s cumulative counts)."""
    model: str | None = None
    finish_reason: str | None = None
    events: int = 0
    """Dispatched events that had data, including ``[DONE]`` and malformed ones."""
    done: bool = False
    """The stream sent ``data: [DONE]``."""
    malformed: int = 0
    """Data payloads that were not a JSON object."""
    error: str | None = None
    """The error an event reported mid-stream (Anthropic's ``error`` event), else None."""
    format: FormatName = "openai"
    """The wire format the events were read in (its :attr:`usage` is in that format's naming)."""


def is_event_stream(content_type: str) -> bool:
    """Whether a Content-Type header value names ``text/event-stream`` (parameters ignored)."""
    return content_type.partition(";")[0].strip().lower() == "text/event-stream"


def reassemble(
    chunks: Sequence[tuple[float, bytes]],
    *,
    path: str | None = None,
    fmt: FormatName | WireFormat | None = None,
) -> StreamSummary:
    """Parse raw SSE ``chunks`` of ``(offset_ms, bytes)`` into a :class:`StreamSummary`.

    The events are read in the format ``fmt`` names, else the one of the request's ``path``
    (:func:`shadow.wire.formats.format_for`), else as any OpenAI format. An event's arrival
    time is the offset of the chunk in which its terminating blank line arrived. Chunk
    boundaries may fall anywhere, including inside a line or a UTF-8 character.
    """
    state = _State(format_for(path, fmt))
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
    """The SSE parser's running state for one stream; the format folds the payloads."""

    __slots__ = ("data", "done", "events", "first_line", "fmt", "malformed", "read")

    def __init__(self, fmt: WireFormat) -> None:
        self.fmt = fmt
        self.read = StreamState()
        self.first_line = True
        self.data: list[bytes] = []
        self.events = 0
        self.done = False
        self.malformed = 0

    def summary(self) -> StreamSummary:
        read = self.read
        return StreamSummary(
            text="".join(read.text),
            tool_calls=read.tool_calls(),
            chunk_offsets_ms=read.offsets,
            ttft_ms=read.offsets[0] if read.offsets else None,
            usage=read.usage,
            model=read.model,
            finish_reason=read.finish_reason,
            events=self.events,
            done=self.done,
            malformed=self.malformed,
            error=read.error,
            format=self.fmt.name,
        )

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
        # names are not needed: each API repeats them in the payload's "type".

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
        self.fmt.event(self.read, obj, offset)
