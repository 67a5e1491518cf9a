"""The seeded corpus (tests/capture/corpus.py): no planted value reaches a record or a sink.

Values of 51 shapes sit in JSON keys at any depth, free text, headers, query strings, SSE
streams (split across two chunks) and gzip/deflate bodies; a benign corpus must survive.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx

from capture.exchange import RecordBuilder
from capture.redact import Redactor
from capture.slices import SliceExtractor
from shadow.serving import BackgroundServer
from tests.capture.conftest import RunningSidecar
from tests.capture.corpus import (
    LOCATIONS,
    Case,
    benign_tokens,
    exchange,
    kept_tokens,
    leaks,
    record_text,
    secret_cases,
)

R = "[REDACTED]"


def test_the_corpus_has_300_values_of_40_shapes_in_every_location() -> None:
    """At least 300 values, 40 shapes, and every location holds 40 or more of them."""
    cases = secret_cases()
    assert len(cases) >= 300
    assert len({case.shape for case in cases}) >= 40
    per_location = Counter(case.location for case in cases)
    assert all(per_location[location] >= 40 for location in LOCATIONS)
    assert all(case.needle for case in cases)


def test_no_value_reaches_a_record_built_from_the_exchange() -> None:
    """Through RecordBuilder (decoding, SSE reassembly, redaction): 0 of the corpus survive."""
    builder = RecordBuilder(redactor=Redactor(), slices=SliceExtractor())
    cases = secret_cases()
    leaked = []
    for i, case in enumerate(cases):
        record, _ = builder.build(exchange(case, i))
        if leaks(case, record_text(record)):
            leaked.append((case.shape, case.location))
        if case.location == "json_key":
            json.loads(record.request.body or "")  # redacted JSON is still JSON
    print(f"seeded corpus: {len(leaked)} of {len(cases)} values reach the record")
    assert leaked == []


class CorpusUpstream:
    """ASGI upstream that answers each case with its response (chunks sent one by one)."""

    def __init__(self, cases: list[Case]) -> None:
        self.cases = cases

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body", False):
            pass
        headers = dict(scope["headers"])
        case = self.cases[int(headers[b"x-corpus-case"])]
        raw = [(k.encode(), v.encode()) for k, v in case.response_headers.items()]
        await send({"type": "http.response.start", "status": 200, "headers": raw})
        for chunk in case.chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


def test_no_value_reaches_the_file_sink_through_a_real_sidecar(
    make_sidecar: Callable[..., RunningSidecar],
) -> None:
    """Every case sent through a sidecar on 127.0.0.1: the sink's file holds none of them."""
    cases = secret_cases()
    upstream = BackgroundServer(CorpusUpstream(cases), timeout_graceful_shutdown=1)
    upstream.start()
    try:
        sidecar = make_sidecar(upstream.url, body_cap_bytes=1 << 20)
        with httpx.Client(timeout=10) as http:
            for i, case in enumerate(cases):
                url = f"{sidecar.url}/v1/chat/completions" + (
                    f"?{case.query}" if case.query else ""
                )
                headers = {**case.headers, "x-corpus-case": str(i)}
                reply = http.post(url, content=case.body, headers=headers)
                assert reply.status_code == 200
        sidecar.stop()
    finally:
        upstream.stop()
    raw = sidecar.out.read_text()
    records = sidecar.records()
    assert len(records) == len(cases)
    by_case = {record.request.headers["x-corpus-case"]: record for record in records}
    leaked = [
        (case.shape, case.location)
        for i, case in enumerate(cases)
        if leaks(case, raw) or leaks(case, record_text(by_case[str(i)]))
    ]
    assert leaked == []
    streamed = [by_case[str(i)] for i, c in enumerate(cases) if c.location == "sse"]
    assert all(r.response is not None and R in (r.response.body or "") for r in streamed)


def test_benign_text_keeps_99_percent_of_its_tokens() -> None:
    """Code, prose, ids, UUIDs, SHAs, timestamps, versions, prices and numbers survive."""
    tokens = benign_tokens()
    out = Redactor().text(" ".join(tokens))
    kept = kept_tokens(tokens, out)
    print(f"benign corpus: {kept} of {len(tokens)} tokens kept")
    assert kept >= 0.99 * len(tokens)


def test_benign_json_bodies_are_unchanged() -> None:
    """Ordinary API JSON survives whole: usage counts, logprobs tokens, a tool's password schema."""
    request = {
        "model": "gpt-4o-mini",
        "max_tokens": 256,
        "max_completion_tokens": 300,
        "messages": [{"role": "user", "content": "reset my password please, order 12345"}],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "reset_password",
                    "parameters": {
                        "type": "object",
                        "properties": {"password": {"type": "string", "minLength": 8}},
                        "required": ["password"],
                    },
                },
            }
        ],
        "metadata": {"author": "ann", "session_timeout": 30, "token_count": 12},
    }
    response = {
        "id": "chatcmpl-9b1c2d3e4f",
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
        "choices": [
            {
                "logprobs": {
                    "content": [
                        {"token": "Hello", "logprob": -0.31, "bytes": [72, 101], "top_logprobs": []}
                    ]
                }
            }
        ],
        "system_fingerprint": "fp_44709d6fcb",
        "created": 1_735_689_600,
    }
    redactor = Redactor()
    for doc in (request, response):
        data = json.dumps(doc).encode()
        assert redactor.body(data, "application/json") == data


def test_benign_headers_are_kept() -> None:
    """Rate-limit token counts, request ids, org ids and agents are not credentials."""
    headers = {
        "x-ratelimit-remaining-tokens": "149000",
        "x-ratelimit-limit-tokens": "150000",
        "anthropic-ratelimit-input-tokens-remaining": "80000",
        "x-request-id": "req_8f2b1c",
        "openai-organization": "org-abc123",
        "user-agent": "OpenAI/Python 1.54.0",
        "content-type": "application/json",
        "date": "Mon, 01 Dec 2025 10:00:00 GMT",
    }
    assert Redactor().headers(headers) == headers
