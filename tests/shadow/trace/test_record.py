"""Tests for the TraceRecord v1 contract: encoding, decoding and validation."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadow.errors import TraceError, UsageError
from shadow.trace.record import (
    SCHEMA_VERSION,
    HttpRequest,
    HttpResponse,
    Timing,
    TraceRecord,
    Usage,
    body_fields,
    decode,
    encode,
)
from tests.shadow.trace.samples import chat_record, valid_json

# --- property tests ----------------------------------------------------------------------------

_FLOATS = st.floats(min_value=0.0, max_value=1e9, allow_nan=False, allow_infinity=False)
_TOKENS = st.none() | st.integers(min_value=0, max_value=2**31)
_TEXT = st.text(max_size=30)
_HEADERS = st.dictionaries(_TEXT, _TEXT, max_size=4)
_BYTES = st.binary(max_size=200) | st.text(max_size=60).map(str.encode)


def _body() -> st.SearchStrategy[dict[str, Any]]:
    """No body, a text body of arbitrary unicode, or a binary body, possibly capped."""
    return st.one_of(
        st.just({}),
        st.text(max_size=200).map(lambda text: {"body": text}),
        st.builds(body_fields, _BYTES),
        st.builds(body_fields, _BYTES, st.integers(min_value=0, max_value=100)),
    )


@st.composite
def _requests(draw: st.DrawFn) -> HttpRequest:
    return HttpRequest(
        method=draw(st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"])),
        path="/" + draw(_TEXT),
        query=draw(_TEXT),
        headers=draw(_HEADERS),
        **draw(_body()),
    )


@st.composite
def _responses(draw: st.DrawFn) -> HttpResponse:
    stream = draw(st.booleans())
    offsets = st.lists(_FLOATS, max_size=8) if stream else st.none()
    return HttpResponse(
        status=draw(st.integers(min_value=100, max_value=599)),
        headers=draw(_HEADERS),
        stream=stream,
        chunk_offsets_ms=draw(offsets),
        **draw(_body()),
    )


_RECORDS = st.builds(
    TraceRecord,
    trace_id=st.text(min_size=1, max_size=40),
    captured_at=st.integers(min_value=1, max_value=2**63 - 1),
    service=_TEXT,
    sidecar=_TEXT,
    request=_requests(),
    response=st.none() | _responses(),
    timing=st.builds(Timing, latency_ms=st.none() | _FLOATS, ttft_ms=st.none() | _FLOATS),
    usage=st.none()
    | st.builds(
        Usage,
        model=st.none() | _TEXT,
        prompt_tokens=_TOKENS,
        completion_tokens=_TOKENS,
        cached_tokens=_TOKENS,
        estimated=st.booleans(),
    ),
    slices=st.dictionaries(_TEXT, _TEXT, max_size=4),
)


@settings(max_examples=150)
@given(record=_RECORDS)
def test_any_record_round_trips_through_json(record: TraceRecord) -> None:
    """Encoding then decoding any valid record gives an equal record."""
    assert decode(encode(record)) == record
    assert decode(encode(record).decode("utf-8")) == record


@settings(max_examples=300)
@given(data=_BYTES | st.binary(max_size=200))
def test_any_bytes_round_trip_through_body_fields(data: bytes) -> None:
    """Any byte string, valid UTF-8 or not, comes back exactly from body_bytes()."""
    request = HttpRequest(method="POST", path="/x", **body_fields(data))
    assert request.body_bytes() == data
    assert request.body_truncated is False
    assert decode(encode(chat_record(request=request))).request.body_bytes() == data


@settings(max_examples=300)
@given(data=_BYTES, cap=st.integers(min_value=0, max_value=120))
def test_capped_body_keeps_the_prefix_and_flags_truncation(data: bytes, cap: int) -> None:
    """With a cap, the stored body is the prefix, flagged exactly when something was cut."""
    request = HttpRequest(method="POST", path="/x", **body_fields(data, cap))
    stored = data[:cap]
    assert request.body_bytes() == stored
    assert request.body_truncated == (len(data) > cap)
    try:
        text = stored.decode("utf-8")
    except UnicodeDecodeError:
        assert request.body is None
        assert request.body_b64 is not None
    else:
        assert request.body == text
        assert request.body_b64 is None


@st.composite
def _damaged(draw: st.DrawFn) -> bytes:
    """A valid encoded record with a random span replaced by random bytes."""
    raw = encode(chat_record())
    start = draw(st.integers(min_value=0, max_value=len(raw)))
    end = draw(st.integers(min_value=start, max_value=min(len(raw), start + 8)))
    return raw[:start] + draw(st.binary(max_size=8)) + raw[end:]


@settings(max_examples=300)
@given(raw=st.binary(max_size=100) | _damaged())
def test_decode_raises_only_trace_error(raw: bytes) -> None:
    """Whatever the bytes, decode returns a record or raises TraceError, never anything else."""
    try:
        outcome: TraceRecord | str = decode(raw)
    except TraceError as exc:
        outcome = str(exc)
    assert isinstance(outcome, TraceRecord) or outcome.startswith("invalid TraceRecord: ")


# --- examples: encoding and decoding -----------------------------------------------------------


def test_encoded_default_record_carries_the_schema_version() -> None:
    """A record built with defaults encodes "v":1, so consumers can tell the schema."""
    record = TraceRecord(trace_id="t", captured_at=1, request=HttpRequest(method="GET", path="/"))
    assert SCHEMA_VERSION == 1
    assert b'"v":1' in encode(record)


def test_non_utf8_body_is_stored_as_base64() -> None:
    """Bytes that are not UTF-8 go to body_b64; text goes to body."""
    assert body_fields(b"\xff\x00") == {"body": None, "body_b64": "/wA=", "body_truncated": False}
    assert body_fields("héllo".encode()) == {
        "body": "héllo",
        "body_b64": None,
        "body_truncated": False,
    }


def test_cap_splitting_a_utf8_sequence_falls_back_to_base64() -> None:
    """A cut in the middle of a multi-byte character never stores invalid text."""
    fields = body_fields("é".encode(), cap=1)
    assert fields == {"body": None, "body_b64": "ww==", "body_truncated": True}


def test_message_without_body_has_empty_body_bytes() -> None:
    """A message with neither body nor body_b64 has an empty body."""
    assert HttpResponse(status=204).body_bytes() == b""


def test_unknown_fields_are_ignored_at_top_level_and_nested() -> None:
    """Fields a newer producer adds, at any depth, are tolerated and ignored."""
    data = valid_json()
    data["future"] = {"anything": [1, 2, 3]}
    data["request"]["priority"] = "high"
    data["response"]["trailers"] = {"x": "y"}
    data["timing"]["queue_ms"] = 3.0
    data["usage"]["audio_tokens"] = 7  # not a Usage field (reasoning_tokens now is)
    assert decode(json.dumps(data)) == chat_record()


def test_decode_accepts_text_and_bytes() -> None:
    """decode takes the JSON as str or bytes."""
    raw = encode(chat_record())
    assert decode(raw) == decode(raw.decode("utf-8")) == chat_record()


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Return a change that sets the dotted ``path`` of the record's JSON data to ``value``."""

    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            data = data[key]
        data[last] = value

    return change


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.pop(key)


def _replace_body_with_b64(value: str) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        del data["request"]["body"]
        data["request"]["body_b64"] = value

    return change


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(
            _set("captured_at", "yesterday"),
            ["`$.captured_at`", "Expected `int`, got `str`"],
            id="wrong-type",
        ),
        pytest.param(
            _set("request.headers", {"x-n": 1}),
            ["`$.request.headers", "Expected `str`, got `int`"],
            id="wrong-nested-type",
        ),
        pytest.param(
            _drop("trace_id"), ["`$`", "missing required field `trace_id`"], id="no-trace-id"
        ),
        pytest.param(_set("trace_id", ""), ["`$`", "trace_id is empty"], id="empty-trace-id"),
        pytest.param(_set("v", 2), ["`$`", "v is 2", "v1"], id="version-2"),
        pytest.param(
            _set("timing.latency_ms", -5), ["`$.timing`", "latency_ms is -5", ">= 0"], id="neg"
        ),
        pytest.param(
            _set("usage.prompt_tokens", -1), ["`$.usage`", "prompt_tokens is -1"], id="neg-tokens"
        ),
        pytest.param(
            _set("response.status", 700), ["`$.response`", "status 700", "100-599"], id="status"
        ),
        pytest.param(
            _set("request.body_b64", "YQ=="),
            ["`$.request`", "body and body_b64 are both set"],
            id="two-bodies",
        ),
        pytest.param(
            _replace_body_with_b64("not base64!"),
            ["`$.request`", "body_b64 is not valid base64"],
            id="bad-base64",
        ),
        pytest.param(
            _set("request.path", "v1/chat"),
            ["`$.request`", "path 'v1/chat' must start with '/'"],
            id="relative-path",
        ),
        pytest.param(
            _set("request.method", "PO ST"), ["`$.request`", "is not an HTTP method"], id="method"
        ),
    ],
)
def test_invalid_record_names_the_field_path_and_problem(
    change: Callable[[dict[str, Any]], None], expected: list[str]
) -> None:
    """A record that fails validation raises TraceError naming the JSON path and the problem."""
    data = valid_json()
    change(data)
    with pytest.raises(TraceError) as info:
        decode(json.dumps(data))
    for part in expected:
        assert part in str(info.value)


@pytest.mark.parametrize(
    "raw", [b"not json", b"", b"\xff\xfe{}", b'{"trace_id": "t"', b'{"trace_id": "\xff"}']
)
def test_input_that_is_not_json_raises_trace_error(raw: bytes) -> None:
    """Bytes that are not JSON raise TraceError saying so."""
    with pytest.raises(TraceError, match="not JSON"):
        decode(raw)


def test_json_that_is_not_an_object_raises_trace_error() -> None:
    """A JSON array is not a record."""
    with pytest.raises(TraceError, match="Expected `object`, got `array`"):
        decode(b"[1, 2]")


def test_trace_error_is_a_usage_error() -> None:
    """A bad record is the input's fault: TraceError is a UsageError (exit 2)."""
    with pytest.raises(UsageError) as info:
        decode(b"{}")
    assert info.value.exit_code == 2
