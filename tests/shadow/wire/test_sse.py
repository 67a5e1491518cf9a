"""shadow.wire.sse: SSE reassembly at any chunking, line endings, tool calls, usage, timing."""

from __future__ import annotations

import itertools
import time
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shadow.sim import MockLLMServer
from shadow.wire.sse import StreamSummary, is_event_stream, reassemble


def event(payload: dict[str, Any] | str, eol: bytes = b"\n") -> bytes:
    """One SSE event carrying ``payload`` as its data, every line ended by ``eol``."""
    data = payload if isinstance(payload, str) else msgspec.json.encode(payload).decode()
    return b"data: " + data.encode() + eol + eol


def chat_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    """A chat.completion.chunk as OpenAI sends it."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-test",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


USAGE = {
    "prompt_tokens": 9,
    "completion_tokens": 3,
    "total_tokens": 12,
    "prompt_tokens_details": {"cached_tokens": 4},
}


def chat_stream(eol: bytes = b"\n") -> list[bytes]:
    """The events of a small chat stream: role, three content pieces, finish, usage, [DONE]."""
    return [
        event(chat_chunk({"role": "assistant", "content": ""}), eol),
        event(chat_chunk({"content": "Hello"}), eol),
        event(chat_chunk({"content": ", wörld"}), eol),  # non-ASCII: a split may cut a character
        event(chat_chunk({"content": "!"}), eol),
        event(chat_chunk({}, "stop"), eol),
        event({**chat_chunk({}), "choices": [], "usage": USAGE}, eol),
        event("[DONE]", eol),
    ]


def content_ends(events: list[bytes]) -> list[int]:
    """Byte position, in the joined stream, of the last byte of each content event."""
    ends, position = [], 0
    for raw in events:
        position += len(raw)
        if b'"content":"' in raw and b'"content":""' not in raw:
            # An event ending in "\r\n\r\n" is complete at its final "\r" (a bare CR ends a line).
            ends.append(position - 2 if raw.endswith(b"\r\n") else position - 1)
    return ends


def test_chat_stream_is_summarised() -> None:
    """Content, usage, model, finish reason, event count and [DONE] come out of one chunk."""
    summary = reassemble([(12.5, b"".join(chat_stream()))])
    assert summary == StreamSummary(
        text="Hello, wörld!",
        chunk_offsets_ms=[12.5, 12.5, 12.5],
        ttft_ms=12.5,
        usage=USAGE,
        model="gpt-test",
        finish_reason="stop",
        events=7,
        done=True,
    )


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
def test_every_split_point_gives_the_same_summary(eol: bytes) -> None:
    """Cutting the stream into two chunks at any byte changes only which chunk events date from."""
    events = chat_stream(eol)
    raw = b"".join(events)
    whole = reassemble([(0.0, raw)])
    ends = content_ends(events)
    for cut in range(len(raw) + 1):
        summary = reassemble([(1.0, raw[:cut]), (2.0, raw[cut:])])
        expected = [1.0 if end < cut else 2.0 for end in ends]
        assert summary.chunk_offsets_ms == expected, f"cut at byte {cut}"
        assert summary.text == whole.text == "Hello, wörld!", f"cut at byte {cut}"
        assert (summary.usage, summary.events, summary.done) == (USAGE, 7, True)


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
def test_an_event_dates_from_the_chunk_that_completed_it(eol: bytes) -> None:
    """Fed one byte per chunk, each content event's arrival is the offset of its last byte."""
    events = chat_stream(eol)
    raw = b"".join(events)
    summary = reassemble([(float(i), raw[i : i + 1]) for i in range(len(raw))])
    assert summary.chunk_offsets_ms == [float(end) for end in content_ends(events)]
    assert summary.ttft_ms == summary.chunk_offsets_ms[0]
    assert summary.text == "Hello, wörld!"


@given(
    eol=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=2_000), max_size=40),
)
def test_any_chunking_gives_the_same_summary(eol: bytes, cuts: list[int]) -> None:
    """Cutting the stream at any set of positions gives the content of the uncut stream."""
    raw = b"".join(chat_stream(eol))
    bounds = [0, *sorted(c % (len(raw) + 1) for c in cuts), len(raw)]
    chunks = [(float(i), raw[a:b]) for i, (a, b) in enumerate(itertools.pairwise(bounds))]
    summary = reassemble(chunks)
    assert (summary.text, summary.usage, summary.events, summary.done) == (
        "Hello, wörld!",
        USAGE,
        7,
        True,
    )


def test_crlf_split_between_cr_and_lf_is_one_line_ending() -> None:
    """A chunk ending in CR and the next starting with LF make one line ending, not two."""
    chunks = [
        (1.0, b'data: {"choices":[{"delta":{"content":"a"}}]}\r'),
        (2.0, b"\n\r"),  # the LF completes the CRLF; the CR is the blank line: dispatch here
        (3.0, b"\n"),
        (4.0, b'data: {"choices":[{"delta":{"content":"b"}}]}\r\n\r\n'),
    ]
    summary = reassemble(chunks)
    assert (summary.text, summary.chunk_offsets_ms, summary.events) == ("ab", [2.0, 4.0], 2)


def test_mixed_line_endings_and_empty_chunks() -> None:
    """CR, LF and CRLF may mix in one stream, and empty chunks change nothing."""
    raw = (
        b'data: {"choices":[{"delta":{"content":"x"}}]}\r\r'
        b'data: {"choices":[{"delta":{"content":"y"}}]}\n\r\n'
        b'data: {"choices":[{"delta":{"content":"z"}}]}\r\n\n'
    )
    for size in range(1, 8):
        chunks = [(float(i), raw[i : i + size]) for i in range(0, len(raw), size)]
        with_empties = [c for chunk in chunks for c in (chunk, (chunk[0], b""))]
        assert reassemble(with_empties).text == "xyz", f"chunks of {size} bytes"


def test_comments_and_other_fields_are_ignored() -> None:
    """Comment lines, event/id/retry fields and unknown fields do not disturb the data."""
    raw = (
        b": keep-alive\n\n"
        b": OPENROUTER PROCESSING\n"
        b"event: message\nid: 7\nretry: 3000\nfoo: bar\n"
        b'data: {"choices":[{"delta":{"content":"ok"}}]}\n\n'
        b":\n\n"
    )
    summary = reassemble([(5.0, raw)])
    assert (summary.text, summary.events, summary.malformed) == ("ok", 1, 0)


def test_multi_line_data_joins_with_newlines() -> None:
    """Several data lines of one event are one payload joined by LF (JSON split over lines)."""
    raw = b'data: {"choices":\ndata: [{"delta":\ndata:{"content":"joined"}}]}\n\n'
    summary = reassemble([(0.0, raw)])
    assert (summary.text, summary.events, summary.malformed) == ("joined", 1, 0)


def test_done_ends_the_stream() -> None:
    """Nothing after data: [DONE] is read, and a stream without it is reported as not done."""
    after = event(chat_chunk({"content": "late"}))
    summary = reassemble(
        [(1.0, event(chat_chunk({"content": "on time"})) + event("[DONE]") + after)]
    )
    assert (summary.text, summary.done, summary.events) == ("on time", True, 2)
    cut_short = reassemble([(1.0, event(chat_chunk({"content": "partial"})))])
    assert (cut_short.text, cut_short.done) == ("partial", False)


def test_an_unterminated_last_event_is_discarded() -> None:
    """An event the stream ends inside (no blank line yet) is not dispatched, per the SSE spec."""
    raw = (
        event(chat_chunk({"content": "kept"}))
        + b'data: {"choices":[{"delta":{"content":"lost"}}]}\n'
    )
    summary = reassemble([(0.0, raw)])
    assert (summary.text, summary.events) == ("kept", 1)


def test_malformed_payloads_are_counted_not_raised() -> None:
    """Data that is not a JSON object is counted as malformed and the stream goes on."""
    raw = (
        b"data: {not json\n\n"
        b"data: 42\n\n"
        b'data: "\xff"\n\n'
        + b"data: "
        + b"[" * 100_000
        + b"\n\n"
        + event(chat_chunk({"content": "fine"}))
    )
    summary = reassemble([(0.0, raw)])
    assert (summary.text, summary.malformed, summary.events) == ("fine", 4, 5)


def test_structurally_odd_chunks_are_skipped_quietly() -> None:
    """Wrong types at any level (choices, delta, content, tool_calls) never raise."""
    odd: list[dict[str, Any]] = [
        {"choices": "nope"},
        {"choices": [None, 3]},
        {"choices": [{"delta": "text"}]},
        {"choices": [{"delta": {"content": 5, "tool_calls": "x"}}]},
        {"choices": [{"delta": {"tool_calls": [None, {"index": "0", "function": {}}]}}]},
        {"model": 7, "usage": [1]},
    ]
    summary = reassemble([(0.0, b"".join(event(o) for o in odd))])
    assert summary == StreamSummary(events=len(odd))


def test_tool_call_deltas_are_assembled_by_index() -> None:
    """Two parallel tool calls streamed as interleaved argument fragments come out whole."""

    def call(index: int, name: str | None = None, arguments: str = "") -> dict[str, Any]:
        function: dict[str, Any] = {"arguments": arguments}
        if name is not None:
            function["name"] = name
        return chat_chunk(
            {"tool_calls": [{"index": index, "type": "function", "function": function}]}
        )

    chunks = [
        call(0, "get_weather"),
        call(0, arguments='{"city": '),
        call(1, "get_time", '{"tz"'),
        call(0, arguments='"Paris"}'),
        call(1, arguments=': "CET"}'),
        chat_chunk({}, "tool_calls"),
    ]
    summary = reassemble([(float(i), event(c)) for i, c in enumerate(chunks)])
    assert summary.tool_calls == [
        {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"name": "get_time", "arguments": '{"tz": "CET"}'},
    ]
    assert (summary.text, summary.ttft_ms, summary.chunk_offsets_ms) == ("", None, [])
    assert summary.finish_reason == "tool_calls"


def test_a_tool_name_repeated_in_every_delta_is_not_doubled() -> None:
    """Servers that resend the function name with each argument fragment get it once."""
    deltas = [
        {"tool_calls": [{"index": 0, "function": {"name": "lookup", "arguments": piece}}]}
        for piece in ('{"q":', ' "x"}')
    ]
    summary = reassemble([(0.0, b"".join(event(chat_chunk(d)) for d in deltas))])
    assert summary.tool_calls == [{"name": "lookup", "arguments": '{"q": "x"}'}]


def test_only_the_first_choice_is_summarised() -> None:
    """With n > 1, chunks of choice index 1 do not leak into the text."""
    second = chat_chunk({"content": "other"})
    second["choices"][0]["index"] = 1
    raw = event(chat_chunk({"content": "first"})) + event(second)
    assert reassemble([(0.0, raw)]).text == "first"


def test_legacy_completion_chunks() -> None:
    """Legacy /v1/completions chunks carry their content in choices[0].text."""
    pieces = ["def", " f", "(x):", ""]
    raw = [
        event(
            {
                "object": "text_completion",
                "model": "davinci-test",
                "choices": [{"index": 0, "text": p, "finish_reason": "length" if not p else None}],
            }
        )
        for p in pieces
    ]
    summary = reassemble([(float(i), r) for i, r in enumerate([*raw, event("[DONE]")])])
    assert summary.text == "def f(x):"
    assert summary.chunk_offsets_ms == [0.0, 1.0, 2.0]
    assert (summary.model, summary.finish_reason, summary.done) == ("davinci-test", "length", True)


def test_responses_api_events() -> None:
    """Responses API streams: text deltas, a function call, model and usage from completion."""
    usage = {"input_tokens": 5, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 0}}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {"model": "gpt-r", "usage": None}},
        {"type": "response.output_text.delta", "delta": "Hi"},
        {"type": "response.output_text.delta", "delta": " there"},
        {
            "type": "response.output_item.done",
            "item": {"type": "function_call", "name": "f", "arguments": "{}"},
        },
        {"type": "response.completed", "response": {"status": "completed", "usage": usage}},
    ]
    raw = [b"event: " + e["type"].encode() + b"\n" + event(e) for e in events]
    summary = reassemble([(float(i), r) for i, r in enumerate(raw)])
    assert (summary.text, summary.chunk_offsets_ms, summary.ttft_ms) == (
        "Hi there",
        [1.0, 2.0],
        1.0,
    )
    assert summary.tool_calls == [{"name": "f", "arguments": "{}"}]
    assert (summary.model, summary.usage, summary.finish_reason) == ("gpt-r", usage, "completed")


def test_a_leading_byte_order_mark_is_ignored() -> None:
    """A UTF-8 BOM before the first field does not hide the first event."""
    raw = b"\xef\xbb\xbf" + event(chat_chunk({"content": "bom"}))
    assert reassemble([(0.0, raw[:2]), (1.0, raw[2:])]).text == "bom"


def test_empty_input() -> None:
    """No chunks (or only empty ones) give an empty summary."""
    assert reassemble([]) == StreamSummary()
    assert reassemble([(0.0, b""), (1.0, b"")]) == StreamSummary()


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("text/event-stream", True),
        ("text/event-stream; charset=utf-8", True),
        (" Text/Event-Stream ;charset=UTF-8", True),
        ("application/json", False),
        ("text/event-streamx", False),
        ("", False),
    ],
)
def test_is_event_stream(content_type: str, expected: bool) -> None:
    """The media type decides, case-insensitively, whatever the parameters."""
    assert is_event_stream(content_type) is expected


# -- a real stream from shadow mock-llm --------------------------------------------------------


def stream_from(
    server: MockLLMServer, path: str, body: dict[str, Any]
) -> tuple[list[tuple[float, bytes]], str]:
    """POST a streaming request; the raw chunks with their arrival offsets, and Content-Type."""
    chunks: list[tuple[float, bytes]] = []
    with httpx.Client(base_url=server.url, timeout=30) as client:
        start = time.perf_counter()
        with client.stream("POST", path, json={**body, "stream": True}) as response:
            response.raise_for_status()
            for raw in response.iter_raw():
                chunks.append(((time.perf_counter() - start) * 1000.0, raw))
            content_type = response.headers["content-type"]
    return chunks, content_type


def test_a_real_chat_stream_matches_the_unstreamed_answer(mock_large: MockLLMServer) -> None:
    """mock-llm's stream, reassembled, says what its non-streamed answer says at temperature 0."""
    body = {
        "model": "shadow-large",
        "messages": [{"role": "user", "content": "explain the retry loop in the worker " * 4}],
        "temperature": 0,
        "max_tokens": 60,
    }
    reply = httpx.post(mock_large.url + "/v1/chat/completions", json=body, timeout=30).json()
    chunks, content_type = stream_from(
        mock_large, "/v1/chat/completions", {**body, "stream_options": {"include_usage": True}}
    )
    summary = reassemble(chunks)
    assert is_event_stream(content_type)
    assert summary.text == reply["choices"][0]["message"]["content"]
    assert summary.usage == reply["usage"]
    assert summary.model == reply["model"]
    assert summary.finish_reason == reply["choices"][0]["finish_reason"]
    assert (summary.done, summary.malformed) == (True, 0)
    # mock-llm streams one word per chunk: one content event per completion token.
    assert len(summary.chunk_offsets_ms) == reply["usage"]["completion_tokens"]
    assert summary.chunk_offsets_ms == sorted(summary.chunk_offsets_ms)
    assert summary.ttft_ms == summary.chunk_offsets_ms[0] > 0


def test_a_real_legacy_stream_matches_the_unstreamed_answer(mock_large: MockLLMServer) -> None:
    """The legacy completions stream reassembles to the non-streamed text, without usage."""
    body = {"model": "shadow-large", "prompt": "def parse_config(path):", "temperature": 0}
    reply = httpx.post(mock_large.url + "/v1/completions", json=body, timeout=30).json()
    chunks, _ = stream_from(mock_large, "/v1/completions", body)
    summary = reassemble(chunks)
    assert summary.text == reply["choices"][0]["text"]
    assert (summary.usage, summary.done) == (None, True)
