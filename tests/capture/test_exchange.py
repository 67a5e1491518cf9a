"""Record building off the live path: decoding, redaction and keys."""

from __future__ import annotations

import gzip
import time
import zlib

import pytest

from capture.exchange import Exchange, RecordBuilder, TraceIds
from capture.redact import Redactor
from capture.slices import SliceExtractor
from tests.capture.encoded import compress

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


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
def test_compressed_responses_are_decoded_then_redacted(encoding: str) -> None:
    """A gzip, deflate, br or zstd body is decoded before redaction, so its secrets are scrubbed;
    the record keeps it plain, without the content-encoding that no longer describes it."""
    plain = f'{{"choices":[{{"message":{{"content":"key {SECRET}"}}}}]}}'.encode()
    packed = gzip.compress(plain) if encoding == "gzip" else compress(plain, encoding)
    record, _ = builder().build(exchange(packed, encoding))
    assert record.response is not None
    text = record.response.body or ""
    assert SECRET not in text
    assert "[REDACTED]" in text
    assert "content-encoding" not in record.response.headers


def test_a_compressed_event_stream_keeps_each_chunks_arrival() -> None:
    """A gzip SSE stream flushed per event decodes chunk by chunk: text, offsets and TTFT."""
    ex = exchange(b"", "")
    ex.request_body = type(ex.request_body)(1 << 20)
    ex.request_body.add(b'{"model":"m","stream":true,"messages":[]}')
    ex.response_headers = [(b"content-type", b"text/event-stream"), (b"content-encoding", b"gzip")]
    ex.response_body = type(ex.response_body)(1 << 20)
    ex.chunks = []
    z = zlib.compressobj(wbits=31)
    words = ["one", " two", " three"]
    for i, word in enumerate(words):
        event = f'data: {{"choices":[{{"index":0,"delta":{{"content":"{word}"}}}}]}}\n\n'
        chunk = z.compress(event.encode()) + z.flush(zlib.Z_SYNC_FLUSH)
        ex.response_body.add(chunk)
        ex.chunks.append((10.0 * (i + 1), chunk))
    tail = z.compress(b"data: [DONE]\n\n") + z.flush()
    ex.response_body.add(tail)
    ex.chunks.append((40.0, tail))
    record, _ = builder().build(ex)
    assert record.response is not None
    assert record.response.stream
    assert record.response.body == "one two three"
    assert record.response.chunk_offsets_ms == [10.0, 20.0, 30.0]
    assert record.timing.ttft_ms == 10.0


def test_a_compressed_request_is_stored_decoded_without_its_coding_headers() -> None:
    """The request body is stored plain; content-encoding and content-length are dropped."""
    ex = exchange(b"{}", "")
    body = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
    packed = compress(body, "zstd")
    ex.request_headers = [
        (b"content-type", b"application/json"),
        (b"content-encoding", b"zstd"),
        (b"content-length", str(len(packed)).encode()),
    ]
    ex.request_body = type(ex.request_body)(1 << 20)
    ex.request_body.add(packed)
    record, _ = builder().build(ex)
    assert record.request.body_bytes() == body
    assert set(record.request.headers) == {"content-type"}


def test_unreadable_encodings_are_not_captured() -> None:
    """A body that does not decode (br that is not br) is left out rather than stored unscrubbed."""
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


def test_an_error_event_inside_an_anthropic_stream_is_recorded_as_an_error() -> None:
    """A 200 stream that ends in Anthropic's error event is not an answer: error stream_error,
    the text before it kept; a stream that completes has no error."""

    def streamed(events: list[str]) -> Exchange:
        ex = exchange(b"", "")
        ex.path = "/v1/messages"
        ex.response_headers = [(b"content-type", b"text/event-stream")]
        ex.response_body = type(ex.response_body)(1 << 20)
        ex.chunks = []
        for i, event in enumerate(events):
            ex.response_body.add(event.encode())
            ex.chunks.append((10.0 * (i + 1), event.encode()))
        return ex

    start = 'event: message_start\ndata: {"type":"message_start","message":{"model":"c"}}\n\n'
    delta = (
        "event: content_block_delta\n"
        'data: {"type":"content_block_delta","index":0,'
        '"delta":{"type":"text_delta","text":"Hel"}}\n\n'
    )
    error = 'event: error\ndata: {"type":"error","error":{"type":"overloaded_error"}}\n\n'
    stop = 'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    failed, _ = builder().build(streamed([start, delta, error]))
    assert failed.error == "stream_error"
    assert failed.response is not None
    assert failed.response.body == "Hel"
    whole, _ = builder().build(streamed([start, delta, stop]))
    assert whole.error is None
