"""One captured exchange: raw facts gathered on the live path, turned into a TraceRecord later.

The record's answer, TTFT, chunk offsets and usage are read in the wire format the request's
path names (:func:`shadow.wire.formats.format_for`: OpenAI, Azure OpenAI, Anthropic, Gemini).

The live path only appends bytes (up to the body cap) and reads clocks into an
:class:`Exchange`. Everything that costs CPU (JSON parsing, SSE reassembly, redaction, slice
extraction, encoding) happens in :class:`RecordBuilder`, which the tee worker runs off the
request path.
"""

from __future__ import annotations

import random
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from capture.redact import Redactor
from capture.slices import SliceExtractor
from shadow.trace.record import HttpRequest, HttpResponse, Timing, TraceRecord, body_fields
from shadow.wire.encoding import BodyDecoder, Undecodable
from shadow.wire.sse import StreamSummary, is_event_stream, reassemble
from shadow.wire.usage import extract_usage, output_text

__all__ = ["Exchange", "RecordBuilder", "TraceIds"]


class TraceIds:
    """Unique, time-ordered trace ids: 13 hex digits of epoch ms, then 12 random hex digits.

    The random part comes from a generator seeded once from the OS, which is several times
    cheaper per id than ``secrets`` and unique enough (48 bits per millisecond).
    """

    def __init__(self) -> None:
        self._random = random.Random(secrets.randbits(64))

    def next(self) -> str:
        """A new trace id."""
        return f"{time.time_ns() // 1_000_000:013x}{self._random.getrandbits(48):012x}"


class _Capped:
    """A byte buffer that keeps at most ``cap`` bytes and counts everything offered."""

    __slots__ = ("buf", "cap", "size")

    def __init__(self, cap: int) -> None:
        self.buf = bytearray()
        self.cap = cap
        self.size = 0

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        room = self.cap - len(self.buf)
        if room > 0:
            self.buf += chunk[:room]

    @property
    def truncated(self) -> bool:
        return self.size > len(self.buf)


@dataclass(slots=True, kw_only=True)
class Exchange:
    """Raw facts of one request/response, filled in on the live path."""

    trace_id: str
    started_ns: int
    """Epoch nanoseconds when the request reached the sidecar."""
    t0: float
    """``time.perf_counter()`` at the same moment, for durations."""
    method: str
    path: str
    query: str
    request_headers: list[tuple[bytes, bytes]]
    cap: int
    request_body: _Capped = field(init=False)
    status: int | None = None
    response_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    response_body: _Capped = field(init=False)
    chunks: list[tuple[float, bytes]] | None = None
    """(offset ms, bytes) per response chunk, kept for event streams only."""
    latency_ms: float | None = None
    upstream_ms: float | None = None
    """Time spent waiting on the upstream: sent request to last response byte."""
    error: str | None = None

    def __post_init__(self) -> None:
        self.request_body = _Capped(self.cap)
        self.response_body = _Capped(self.cap)

    def start_response(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """Note the response's status and headers; an event stream's chunks keep their timing."""
        self.status = status
        self.response_headers = headers
        content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
        if is_event_stream(content_type.decode("latin-1")):
            self.chunks = []

    def add_response_chunk(self, chunk: bytes) -> None:
        """Keep a response chunk (up to the cap), with its arrival offset if streaming."""
        before = len(self.response_body.buf)
        self.response_body.add(chunk)
        if self.chunks is not None and len(self.response_body.buf) > before:
            kept = bytes(self.response_body.buf[before:])
            self.chunks.append(((time.perf_counter() - self.t0) * 1000.0, kept))

    def finish(self) -> None:
        """Stamp the end-to-end latency (first request byte to last response byte)."""
        self.latency_ms = (time.perf_counter() - self.t0) * 1000.0


def _headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out


class RecordBuilder:
    """Turns an :class:`Exchange` into a redacted :class:`TraceRecord` (off the live path)."""

    def __init__(
        self,
        *,
        redactor: Redactor,
        slices: SliceExtractor,
        service: str = "",
        sidecar: str = "",
        key_header: str = "",
    ) -> None:
        self.redactor = redactor
        self.slices = slices
        self.service = service
        self.sidecar = sidecar
        self.key_header = key_header.lower()

    def build(self, ex: Exchange) -> tuple[TraceRecord, bytes]:
        """The record and its Kafka key (the trace id, or the session header's value)."""
        req_headers = _headers(ex.request_headers)
        resp_headers = _headers(ex.response_headers)
        req = _decoded([bytes(ex.request_body.buf)], req_headers, ex.request_body, ex.cap)
        req_raw = b"".join(req.parts)
        streamed = ex.chunks is not None or is_event_stream(resp_headers.get("content-type", ""))
        chunks = ex.chunks if ex.chunks is not None else [(0.0, bytes(ex.response_body.buf))]
        resp = _decoded([c for _, c in chunks], resp_headers, ex.response_body, ex.cap)
        resp_raw = b"".join(resp.parts)
        stream: StreamSummary | None = None
        if streamed and resp.note is None:
            stream = reassemble(
                [(at, part) for (at, _), part in zip(chunks, resp.parts, strict=True)],
                path=ex.path,
            )
        # The request's path picks the wire format (shadow.wire.formats): OpenAI, Azure OpenAI,
        # Anthropic or Gemini; usage is normalised to one convention (TraceRecord v1).
        usage = extract_usage(req_raw, resp_raw, stream, ex.status or 0, path=ex.path)
        slices = self.slices.extract(
            req_headers, req_raw, path=ex.path, status=ex.status, response=resp_raw,
            stream=stream, streamed=streamed, usage=usage,
        )  # fmt: skip
        key = ex.trace_id.encode()
        if self.key_header and self.key_header in req_headers:
            key = req_headers[self.key_header].encode("utf-8", "replace")

        red = self.redactor
        request = HttpRequest(
            method=ex.method,
            path=ex.path,
            query=red.query(ex.query) if ex.query else "",
            headers=red.headers(req_headers),
            **_body(
                red.body(req.note or req_raw, req_headers.get("content-type", "")),
                req.truncated,
            ),
        )
        response: HttpResponse | None = None
        if ex.status is not None:
            if stream is not None:
                # the answer's text, or with tool calls the JSON document output_text gives
                text = red.text(output_text(b"", stream) or "").encode()
                body = _body(text, resp.truncated)
            else:
                plain = resp.note or resp_raw
                body = _body(red.body(plain, resp_headers.get("content-type", "")), resp.truncated)
            response = HttpResponse(
                status=ex.status,
                headers=red.headers(resp_headers),
                stream=streamed,
                chunk_offsets_ms=stream.chunk_offsets_ms if stream is not None else None,
                **body,
            )
        record = TraceRecord(
            trace_id=ex.trace_id,
            captured_at=ex.started_ns,
            service=self.service,
            sidecar=self.sidecar,
            request=request,
            response=response,
            timing=Timing(
                latency_ms=ex.latency_ms,
                ttft_ms=stream.ttft_ms if stream is not None else None,
            ),
            usage=usage,
            slices=slices,
            # an error event inside a 200 stream (Anthropic's overloaded_error) is no answer
            error=ex.error or ("stream_error" if stream is not None and stream.error else None),
        )
        return record, key


@dataclass(slots=True)
class _Decoded:
    parts: list[bytes]
    """The decoded body, one part per coded chunk (empty when it does not decode)."""
    truncated: bool
    note: bytes | None = None
    """What the record holds instead of a body that does not decode (with the reason)."""


def _decoded(parts: list[bytes], headers: dict[str, str], captured: _Capped, cap: int) -> _Decoded:
    """The body with its content-encoding undone, so redaction and replay see plain bytes.

    gzip, deflate, br and zstd are undone (a body cut at the cap decodes as far as it goes, and
    decoding stops at the cap). The record then holds the decoded body without the
    ``content-encoding`` and ``content-length`` headers, which described the coded bytes. A body
    that does not decode (an unknown coding, bytes that are not what the header says) is not
    captured at all: compressed bytes cannot be scrubbed, and nothing unscrubbed leaves the
    sidecar; the record holds a note with the reason instead.
    """
    encoding = headers.pop("content-encoding", "")
    if not encoding:
        return _Decoded(parts, captured.truncated)
    headers.pop("content-length", None)
    try:
        decoder = BodyDecoder(encoding, limit=cap)
        out = [decoder.feed(part) for part in parts]
        decoder.finish(complete=not captured.truncated)
    except Undecodable as exc:
        # truncated: the record does not hold the body, so a replay skips it (skipped_body)
        return _Decoded([], True, f"[shadow: body not captured: {exc}]".encode())
    return _Decoded(out, captured.truncated or decoder.truncated)


def _body(data: bytes, truncated: bool) -> dict[str, Any]:
    fields = body_fields(data)
    fields["body_truncated"] = truncated or fields["body_truncated"]
    return fields
