"""Encoded bodies: forwarded untouched, recorded decoded, replayed to servers that decode them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import httpx
import pytest

from shadow.serving import BackgroundServer
from shadow.sim import MockLLM
from tests.capture.conftest import Recorder, RunningSidecar
from tests.capture.encoded import CODINGS, CodingServer, compress, decompress

MakeSidecar = Callable[..., RunningSidecar]
CHAT = {
    "model": "shadow-large",
    "messages": [{"role": "user", "content": "explain the parser in plain words please"}],
    "max_tokens": 12,
    "temperature": 0,
}


@pytest.fixture
def coding_upstream() -> Iterator[tuple[BackgroundServer, Recorder, CodingServer]]:
    """mock-llm behind a decoding front (500 on a body it cannot decode), recorded as sent."""
    coder = CodingServer(MockLLM("large", seed=3))
    recorder = Recorder(coder)
    with BackgroundServer(recorder, timeout_graceful_shutdown=1) as server:
        yield server, recorder, coder


def _post(url: str, body: bytes, coding: str, test_id: str, **extra: str) -> httpx.Response:
    headers = {"content-type": "application/json", "x-test-id": test_id, **extra}
    if coding:
        headers["content-encoding"] = coding
    with httpx.Client(timeout=30) as http:
        return http.post(url + "/v1/chat/completions", content=body, headers=headers)


@pytest.mark.parametrize("coding", CODINGS)
def test_a_coded_request_goes_upstream_as_sent_and_is_recorded_decoded(
    coding: str,
    coding_upstream: tuple[BackgroundServer, Recorder, CodingServer],
    make_sidecar: MakeSidecar,
) -> None:
    """The upstream gets the client's compressed bytes; the record the plain body, no coding."""
    upstream, recorder, coder = coding_upstream
    sidecar = make_sidecar(upstream.url)
    plain = json.dumps(CHAT).encode()
    packed = compress(plain, coding)
    reply = _post(sidecar.url, packed, coding, "coded")
    assert reply.status_code == 200, reply.text
    seen = recorder.seen["coded"]
    assert bytes(seen.body) == packed
    assert seen.headers["content-encoding"] == coding
    assert coder.failures == 0
    sidecar.stop()
    (record,) = sidecar.records()
    assert record.request.body_bytes() == plain
    assert not record.request.body_truncated
    assert "content-encoding" not in record.request.headers
    assert "content-length" not in record.request.headers  # it counted the coded bytes
    assert record.usage is not None
    assert not record.usage.estimated


@pytest.mark.parametrize("coding", CODINGS)
@pytest.mark.parametrize("stream", [False, True])
def test_a_coded_response_reaches_the_client_as_sent_and_is_recorded_decoded(
    coding: str,
    stream: bool,
    coding_upstream: tuple[BackgroundServer, Recorder, CodingServer],
    make_sidecar: MakeSidecar,
) -> None:
    """A compressed answer (stream or not) is read for usage and stored plain, no coding."""
    upstream, _, _ = coding_upstream
    sidecar = make_sidecar(upstream.url)
    body = {**CHAT, "stream": stream, "stream_options": {"include_usage": True}}
    headers = {"x-test-respond-encoding": coding, "accept-encoding": coding}
    with (
        httpx.Client(timeout=30) as http,
        http.stream(
            "POST", sidecar.url + "/v1/chat/completions", json=body, headers=headers
        ) as reply,
    ):
        raw = b"".join(reply.iter_raw())
    assert reply.status_code == 200
    assert reply.headers["content-encoding"] == coding
    answer = decompress(raw, coding)
    sidecar.stop()
    (record,) = sidecar.records()
    response = record.response
    assert response is not None
    assert "content-encoding" not in response.headers
    assert record.usage is not None
    assert not record.usage.estimated
    assert record.usage.completion_tokens is not None
    if stream:
        events = [
            json.loads(line[6:])
            for line in answer.decode().splitlines()
            if line.startswith("data: {")
        ]
        text = "".join(
            e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"]
        )
        usage = next(e["usage"] for e in events if e.get("usage"))
        assert response.stream
        assert response.body == text
        assert response.chunk_offsets_ms is not None
        assert len(response.chunk_offsets_ms) == usage["completion_tokens"]
        assert record.timing.ttft_ms is not None
    else:
        assert json.loads(response.body or "") == json.loads(answer)
        assert record.usage.completion_tokens == json.loads(answer)["usage"]["completion_tokens"]


def _replay(records: Path, tmp_path: Path) -> list[tuple[str, int, str | None]]:
    """``shadow replay`` of ``records`` to two decoding mock servers: (arm, status, error)."""
    out = tmp_path / "run.duckdb"
    with (
        BackgroundServer(CodingServer(MockLLM("large", seed=3))) as baseline,
        BackgroundServer(CodingServer(MockLLM("routed", seed=3))) as candidate,
    ):
        result = subprocess.run(
            [sys.executable, "-m", "shadow", "replay", str(records), "--baseline", baseline.url,
             "--candidate", candidate.url, "--speed", "100", "--out", str(out), "--json"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with duckdb.connect(str(out), read_only=True) as con:
        rows = con.execute("select arm, status, error from results order by arm").fetchall()
    return [(str(arm), int(status), error) for arm, status, error in rows]


@pytest.mark.parametrize("coding", CODINGS)
def test_shadow_replay_of_a_coded_request_succeeds_on_every_arm(
    coding: str,
    coding_upstream: tuple[BackgroundServer, Recorder, CodingServer],
    make_sidecar: MakeSidecar,
    tmp_path: Path,
) -> None:
    """Captured gzip/deflate/br/zstd requests replay with 200s, not the decoder's 500."""
    upstream, _, _ = coding_upstream
    sidecar = make_sidecar(upstream.url)
    packed = compress(json.dumps(CHAT).encode(), coding)
    streamed = compress(json.dumps({**CHAT, "stream": True}).encode(), coding)
    assert _post(sidecar.url, packed, coding, "plain").status_code == 200
    assert _post(sidecar.url, streamed, coding, "stream").status_code == 200
    sidecar.stop()
    assert len(sidecar.records()) == 2
    rows = _replay(sidecar.out, tmp_path)
    assert rows == [("baseline", 200, None)] * 2 + [("candidate", 200, None)] * 2


def test_the_decoding_front_refuses_a_plain_body_that_claims_a_coding(
    coding_upstream: tuple[BackgroundServer, Recorder, CodingServer],
) -> None:
    """The reported bug's symptom: a decoded body sent with ``gzip`` beside it gets a 500."""
    upstream, _, coder = coding_upstream
    assert _post(upstream.url, json.dumps(CHAT).encode(), "gzip", "claims").status_code == 500
    assert coder.failures == 1


@pytest.mark.parametrize(
    ("coding", "reason"),
    [
        ("gzip", "gzip body does not decode"),
        ("br", "br body does not decode"),
        ("zstd", "zstd body does not decode"),
        ("compress", "unsupported content-encoding compress"),
    ],
)
def test_a_body_that_does_not_decode_is_recorded_as_such_and_the_request_still_goes(
    coding: str,
    reason: str,
    coding_upstream: tuple[BackgroundServer, Recorder, CodingServer],
    make_sidecar: MakeSidecar,
) -> None:
    """Bytes that are not what the header says: forwarded as sent, recorded with the reason."""
    upstream, recorder, _ = coding_upstream
    sidecar = make_sidecar(upstream.url)
    secret = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD"
    garbage = b"\x1f\x8b not really compressed " + secret.encode()
    reply = _post(sidecar.url, garbage, coding, "garbage")
    assert reply.status_code == 500  # the upstream's own answer, passed through
    assert bytes(recorder.seen["garbage"].body) == garbage
    ok = _post(sidecar.url, json.dumps(CHAT).encode(), "", "after")
    assert ok.status_code == 200  # the sidecar goes on serving
    sidecar.stop()
    first, second = sidecar.records()
    note = first.request.body or ""
    assert "not captured" in note
    assert reason in note
    assert first.request.body_truncated  # so a replay skips it (skipped_body), never sends it
    assert not second.request.body_truncated
    assert secret not in sidecar.out.read_text()
    assert "content-encoding" not in first.request.headers
    assert second.request.body_bytes() == json.dumps(CHAT).encode()
