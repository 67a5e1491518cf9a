"""Record building off the live path: decoding, redaction and keys."""

from __future__ import annotations

import gzip
import time

import pytest

from capture.exchange import Exchange, RecordBuilder, TraceIds
from capture.redact import Redactor
from capture.slices import SliceExtractor

SECRET = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD"


def exchange(response: bytes, encoding: str) -> Exchange:
    ex = Exchange(
        trace_id="t1",
        started_ns=1,
        t0=time.perf_counter(),
        method="POST",
        path="/v1/chat/completions",
        query="",
        request_headers=[(b"content-type", b"application/json"), (b"x-session", b"s-9")],
        cap=1 << 20,
    )
    ex.request_body.add(b'{"model":"m","messages":[]}')
    ex.status = 200
    ex.response_headers = [(b"content-type", b"application/json")]
    if encoding:
        ex.response_headers.append((b"content-encoding", encoding.encode()))
    ex.response_body.add(response)
    ex.finish()
    return ex


def builder(key_header: str = "") -> RecordBuilder:
    return RecordBuilder(redactor=Redactor(), slices=SliceExtractor(), key_header=key_header)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_responses_are_decoded_then_redacted(encoding: str) -> None:
    """A gzip or deflate body is decoded before redaction, so its secrets are scrubbed."""
    plain = f'{{"choices":[{{"message":{{"content":"key {SECRET}"}}}}]}}'.encode()
    packed = gzip.compress(plain) if encoding == "gzip" else __import__("zlib").compress(plain)
    record, _ = builder().build(exchange(packed, encoding))
    assert record.response is not None
    text = record.response.body or ""
    assert SECRET not in text
    assert "[REDACTED]" in text


def test_unreadable_encodings_are_not_captured() -> None:
    """A body in an encoding shadow cannot decode is left out rather than stored unscrubbed."""
    record, _ = builder().build(exchange(b"\x8b\x00opaque-brotli-bytes " + SECRET.encode(), "br"))
    assert record.response is not None
    assert SECRET not in (record.response.body or "")
    assert "not captured" in (record.response.body or "")


def test_the_kafka_key_is_the_trace_id_or_the_session_header() -> None:
    """Records are keyed by trace id, or by a configured session header to keep order."""
    _, by_id = builder().build(exchange(b"{}", ""))
    _, by_session = builder("x-session").build(exchange(b"{}", ""))
    assert by_id == b"t1"
    assert by_session == b"s-9"


def test_trace_ids_are_unique_and_time_ordered() -> None:
    """Ten thousand ids are distinct and their time prefix never goes backwards."""
    ids = TraceIds()
    many = [ids.next() for _ in range(10_000)]
    assert len(set(many)) == len(many)
    prefixes = [i[:13] for i in many]
    assert prefixes == sorted(prefixes)
