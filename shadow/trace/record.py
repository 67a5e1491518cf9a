"""TraceRecord v1: one captured exchange, the contract between capture, Kafka and replay.

Encoded as one JSON object per Kafka message (or per JSONL line). msgspec does the work:
typed Structs decode and validate in one pass, several times faster than json + a
validator, and its errors carry the JSON path of the bad field (``at `$.timing.latency_ms```),
which is what a person needs to fix a producer. Unknown fields are tolerated (ignored on
decode) so a newer producer never breaks an older consumer.

Bodies are UTF-8 text in ``body`` when they decode as UTF-8, otherwise base64 in
``body_b64``; :func:`body_fields` and :meth:`HttpMessage.body_bytes` convert both ways, so any
byte string round-trips exactly.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import msgspec

from shadow.errors import TraceError

__all__ = [
    "SCHEMA_VERSION",
    "HttpRequest",
    "HttpResponse",
    "Timing",
    "TraceRecord",
    "Usage",
    "body_fields",
    "convert",
    "decode",
    "encode",
]

SCHEMA_VERSION = 1


def body_fields(data: bytes, cap: int | None = None) -> dict[str, Any]:
    """Return the body keyword arguments (``body``/``body_b64``/``body_truncated``) for ``data``.

    ``cap`` limits the stored bytes; a longer body is cut and flagged as truncated. A cut that
    splits a UTF-8 sequence falls back to base64 rather than storing invalid text.
    """
    truncated = cap is not None and len(data) > cap
    if truncated:
        data = data[:cap]
    try:
        return {"body": data.decode("utf-8"), "body_b64": None, "body_truncated": truncated}
    except UnicodeDecodeError:
        return {
            "body": None,
            "body_b64": base64.b64encode(data).decode("ascii"),
            "body_truncated": truncated,
        }


class _Struct(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Shared options: keyword-only construction, defaults left out of the JSON."""


class HttpMessage(_Struct, kw_only=True):
    """Headers and body shared by requests and responses.

    ``headers`` are lower-cased names; repeated headers are joined with ``", "``.
    """

    headers: dict[str, str] = msgspec.field(default_factory=dict)
    body: str | None = None
    body_b64: str | None = None
    body_truncated: bool = False

    def __post_init__(self) -> None:
        if self.body is not None and self.body_b64 is not None:
            raise ValueError("body and body_b64 are both set; a message has one body")
        if self.body_b64 is not None:
            try:
                base64.b64decode(self.body_b64, validate=True)
            except binascii.Error as exc:
                raise ValueError(f"body_b64 is not valid base64 ({exc})") from None

    def body_bytes(self) -> bytes:
        """The body as bytes (empty when there is none)."""
        if self.body_b64 is not None:
            return base64.b64decode(self.body_b64)
        if self.body is not None:
            return self.body.encode("utf-8")
        return b""


class HttpRequest(HttpMessage, kw_only=True):
    """The request as the client sent it (after redaction)."""

    method: str
    path: str
    query: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.method or not self.method.isalpha():
            raise ValueError(f"method {self.method!r} is not an HTTP method")
        if not self.path.startswith("/"):
            raise ValueError(f"path {self.path!r} must start with '/'")


class HttpResponse(HttpMessage, kw_only=True):
    """The response the upstream returned.

    For Server-Sent Events (``stream``), ``body`` is the reassembled answer text (with tool
    calls, the JSON document of :func:`shadow.wire.usage.output_text`) and ``chunk_offsets_ms``
    the arrival time of each content chunk (answer text) after the first request byte.
    """

    status: int
    stream: bool = False
    chunk_offsets_ms: list[float] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 100 <= self.status <= 599:
            raise ValueError(f"status {self.status} is not an HTTP status (100-599)")


class Timing(_Struct, kw_only=True):
    """How long the exchange took, in milliseconds; None when not measured (e.g. imported)."""

    latency_ms: float | None = None
    ttft_ms: float | None = None

    def __post_init__(self) -> None:
        for name in ("latency_ms", "ttft_ms"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} is {value}; it must be >= 0")


class Usage(_Struct, kw_only=True):
    """Token usage from the response; ``estimated`` when the response did not report it.

    One convention whatever the API (docs/architecture.md, "TraceRecord v1"):
    ``prompt_tokens`` counts all input, cache reads and cache writes included (as OpenAI counts
    it; Anthropic's is ``input_tokens`` + ``cache_read_input_tokens`` +
    ``cache_creation_input_tokens``), ``cached_tokens`` the cache reads, ``cache_write_tokens``
    the cache writes, ``completion_tokens`` all output (reasoning included),
    ``reasoning_tokens`` the reasoning part where reported. ``model`` is the model the response
    reports (Gemini's ``modelVersion``), else the requested one.
    """

    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    estimated: bool = False

    def __post_init__(self) -> None:
        for name in (
            "prompt_tokens",
            "completion_tokens",
            "cached_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
        ):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} is {value}; it must be >= 0")


class TraceRecord(_Struct, kw_only=True, omit_defaults=False):
    """One captured request/response exchange (docs/architecture.md, "TraceRecord v1")."""

    v: int = SCHEMA_VERSION
    trace_id: str
    captured_at: int
    """UTC epoch time of the first request byte, in nanoseconds."""
    service: str = ""
    sidecar: str = ""
    request: HttpRequest
    response: HttpResponse | None = None
    timing: Timing = msgspec.field(default_factory=Timing)
    usage: Usage | None = None
    slices: dict[str, str] = msgspec.field(default_factory=dict)
    error: str | None = None
    """Why the exchange did not complete normally, when it did not: ``upstream_unreachable``,
    ``upstream_timeout``, ``upstream_reset``, ``client_disconnected``, or ``stream_error`` (the
    upstream's event stream reported an error mid-answer, e.g. Anthropic's ``error`` event)."""

    def __post_init__(self) -> None:
        if self.v != SCHEMA_VERSION:
            raise ValueError(f"v is {self.v}; this shadow reads TraceRecord v{SCHEMA_VERSION}")
        if not self.trace_id:
            raise ValueError("trace_id is empty; every record needs a unique id")
        if self.captured_at <= 0:
            raise ValueError(f"captured_at is {self.captured_at}; it must be epoch nanoseconds > 0")


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(TraceRecord)


def encode(record: TraceRecord) -> bytes:
    """Encode a record as compact JSON bytes (one Kafka message or JSONL line)."""
    return _ENCODER.encode(record)


def decode(data: bytes | str) -> TraceRecord:
    """Decode and validate one record.

    Raises:
        TraceError: the input is not JSON or a field is missing or wrong; the message names
            the field's JSON path and the problem.
    """
    try:
        return _DECODER.decode(data)
    except msgspec.ValidationError as exc:
        raise TraceError(_invalid(exc)) from None
    except msgspec.DecodeError as exc:
        raise TraceError(f"invalid TraceRecord: not JSON ({exc})") from None
    except UnicodeDecodeError as exc:  # msgspec raises this for bad bytes inside a JSON string
        raise TraceError(f"invalid TraceRecord: not JSON (not UTF-8: {exc})") from None


def convert(value: Any) -> TraceRecord:
    """Validate one record given as Python objects in its JSON shape (e.g. a Parquet row).

    Raises:
        TraceError: a field is missing or wrong, named as :func:`decode` names it.
    """
    try:
        return msgspec.convert(value, TraceRecord)
    except msgspec.ValidationError as exc:
        raise TraceError(_invalid(exc)) from None


def _invalid(exc: msgspec.ValidationError) -> str:
    # msgspec leaves out the path for top-level fields; name the root so every message has one.
    message = str(exc)
    where = "" if " - at `$" in message else " - at `$`"
    return f"invalid TraceRecord: {message}{where}"
