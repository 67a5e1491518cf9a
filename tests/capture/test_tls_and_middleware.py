"""TLS on both sides of the sidecar, and capture as in-process ASGI middleware."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import trustme
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from capture.middleware import CaptureMiddleware
from capture.sinks import FileSink
from shadow.config import CaptureConfig
from shadow.serving import BackgroundServer
from shadow.sim import MockLLM
from shadow.trace.jsonl import read_jsonl
from tests.capture.conftest import Recorder, RunningSidecar

MakeSidecar = Callable[..., RunningSidecar]
CHAT = {"model": "x", "messages": [{"role": "user", "content": "hi there"}], "max_tokens": 4}


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A throwaway certificate authority for 127.0.0.1."""
    return trustme.CA()


@pytest.fixture(scope="module")
def cert_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Server certificate, key and CA bundle files for 127.0.0.1."""
    folder = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file, ca_file = folder / "cert.pem", folder / "key.pem", folder / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    return cert_file, key_file, ca_file


def test_https_upstream_is_verified(
    cert_files: tuple[Path, Path, Path], make_sidecar: MakeSidecar
) -> None:
    """An https upstream with an untrusted certificate is refused (502); its CA makes it work."""
    cert, key, ca_file = cert_files
    with BackgroundServer(
        MockLLM("large", time_scale=0), ssl_certfile=str(cert), ssl_keyfile=str(key)
    ) as upstream:
        assert upstream.url.startswith("https://")
        untrusting = make_sidecar(upstream.url, name="untrusting")
        trusting = make_sidecar(upstream.url, name="trusting", upstream_ca_file=str(ca_file))
        refused = httpx.post(untrusting.url + "/v1/chat/completions", json=CHAT)
        accepted = httpx.post(trusting.url + "/v1/chat/completions", json=CHAT)
    assert refused.status_code == 502
    assert refused.json()["error"]["type"] == "upstream_unreachable"
    assert accepted.status_code == 200
    assert accepted.json()["model"] == "shadow-large"


def test_sidecar_terminates_tls(cert_files: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """With a certificate the sidecar serves HTTPS and still forwards to a plain upstream."""
    from capture.live.serve import LiveServer
    from capture.sidecar import Sidecar

    cert, key, ca_file = cert_files
    recorder = Recorder(MockLLM("small", time_scale=0))
    with BackgroundServer(recorder) as upstream:
        app = Sidecar(
            capture=CaptureConfig(upstream=upstream.url, spool_dir=str(tmp_path / "spool")),
            sink=FileSink(tmp_path / "out.jsonl"),
        )
        with LiveServer(app, ssl_certfile=str(cert), ssl_keyfile=str(key)) as sidecar:
            reply = httpx.post(
                sidecar.url + "/v1/chat/completions",
                json=CHAT,
                verify=ssl.create_default_context(cafile=str(ca_file)),
                headers={"x-test-id": "tls"},
            )
    assert sidecar.url.startswith("https://")
    assert reply.status_code == 200
    assert recorder.seen["tls"].headers["x-forwarded-proto"] == "https"
    assert recorder.seen["tls"].headers["x-forwarded-for"] == "127.0.0.1"
    assert recorder.seen["tls"].headers["forwarded"] == (
        f'for=127.0.0.1;host="127.0.0.1:{sidecar.port}";proto=https'
    )
    (record,) = read_jsonl(tmp_path / "out.jsonl")
    assert record.response is not None
    assert record.response.status == 200


async def chat(request: Request) -> JSONResponse:
    body = await request.json()
    return JSONResponse(
        {
            "model": "in-process",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok " * 3}}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5},
            "echo": body["messages"][0]["content"],
        }
    )


async def stream(request: Request) -> StreamingResponse:
    async def events() -> object:
        for word in ("one", " two", " three"):
            yield f'data: {{"choices":[{{"index":0,"delta":{{"content":"{word}"}}}}]}}\n\n'
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")  # type: ignore[arg-type]


def test_middleware_captures_a_starlette_app(tmp_path: Path) -> None:
    """Mounted around a Starlette app, the middleware records its exchanges like the sidecar."""
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/stream", stream, methods=["POST"]),
            Route("/health", lambda r: JSONResponse({"ok": True})),
        ]
    )
    out = tmp_path / "mw.jsonl"
    wrapped = CaptureMiddleware(
        app,
        sink=FileSink(out),
        capture=CaptureConfig(spool_dir=str(tmp_path / "spool")),
    )
    with BackgroundServer(wrapped, lifespan="on") as server, httpx.Client() as http:
        plain = http.post(
            server.url + "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "hello"}]},
            headers={"authorization": "Bearer in-app-secret", "x-tenant": "acme"},
        )
        streamed = http.post(server.url + "/v1/stream", json={})
        assert http.get(server.url + "/health").json() == {"ok": True}
    assert plain.json()["echo"] == "hello"
    assert streamed.text.endswith("data: [DONE]\n\n")
    records = {r.request.path: r for r in read_jsonl(out)}
    assert set(records) == {"/v1/chat/completions", "/v1/stream"}  # /health is not under /v1/
    first = records["/v1/chat/completions"]
    assert first.request.headers["authorization"] == "[REDACTED]"
    assert "in-app-secret" not in out.read_text()
    assert first.slices["tenant"] == "acme"
    assert first.usage is not None
    assert first.usage.completion_tokens == 3
    second = records["/v1/stream"]
    assert second.response is not None
    assert second.response.stream
    assert second.response.body == "one two three"
    assert second.timing.ttft_ms is not None


def test_middleware_records_a_compressed_answer_decoded(tmp_path: Path) -> None:
    """Around an app that gzips its answers, the record holds the plain body and usage."""
    from starlette.middleware.gzip import GZipMiddleware

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    out = tmp_path / "gz.jsonl"
    wrapped = CaptureMiddleware(
        GZipMiddleware(app, minimum_size=10),
        sink=FileSink(out),
        capture=CaptureConfig(spool_dir=str(tmp_path / "spool")),
    )
    with BackgroundServer(wrapped, lifespan="on") as server, httpx.Client() as http:
        reply = http.post(
            server.url + "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "hello " * 20}]},
            headers={"accept-encoding": "gzip"},
        )
    assert reply.headers["content-encoding"] == "gzip"
    (record,) = read_jsonl(out)
    assert record.response is not None
    assert "content-encoding" not in record.response.headers
    assert record.response.body is not None
    assert '"model":"in-process"' in record.response.body
    assert record.usage is not None
    assert record.usage.completion_tokens == 3
