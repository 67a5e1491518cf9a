"""What the sidecar tells its upstream about the client, and that only the upstream is called."""

from __future__ import annotations

import socket
from collections.abc import Callable

import httpx
import pytest

from capture.live.heads import forwarding_headers
from shadow.serving import BackgroundServer
from tests.capture.conftest import Recorder, RunningSidecar

MakeUpstream = Callable[..., tuple[BackgroundServer, Recorder]]
MakeSidecar = Callable[..., RunningSidecar]

SPOOFED = {
    "x-forwarded-for": "6.6.6.6",
    "x-forwarded-host": "evil.example",
    "x-forwarded-proto": "https",
    "x-forwarded-port": "8443",
    "x-forwarded-prefix": "/admin",
    "x-forwarded-server": "evil.example",
    "forwarded": "for=6.6.6.6;host=evil.example;proto=https",
    "x-real-ip": "6.6.6.6",
}


def test_a_clients_forwarding_headers_are_replaced_by_the_sidecars_own(
    make_upstream: MakeUpstream, make_sidecar: MakeSidecar
) -> None:
    """Spoofed X-Forwarded-*, Forwarded and X-Real-IP never reach the upstream; ours do."""
    upstream, recorder = make_upstream()
    sidecar = make_sidecar(upstream.url)
    reply = httpx.get(
        sidecar.url + "/v1/models",
        headers={**SPOOFED, "host": "api.example.com:8443", "x-test-id": "spoofed"},
    )
    assert reply.status_code == 200
    seen = recorder.seen["spoofed"].headers
    assert seen["host"] == f"127.0.0.1:{upstream.port}"
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == "api.example.com:8443"
    assert seen["forwarded"] == 'for=127.0.0.1;host="api.example.com:8443";proto=http'
    for name in ("x-forwarded-port", "x-forwarded-prefix", "x-forwarded-server", "x-real-ip"):
        assert name not in seen
    assert "6.6.6.6" not in str(seen)
    assert "evil.example" not in str(seen)
    sidecar.stop()
    (record,) = sidecar.records()
    assert record.request.headers["x-forwarded-for"] == "6.6.6.6"  # the record: what was sent


def test_a_malformed_host_is_not_passed_on_as_the_forwarded_host(
    make_upstream: MakeUpstream, make_sidecar: MakeSidecar
) -> None:
    """A Host that is not host[:port] (here with a path and userinfo) is left out."""
    upstream, recorder = make_upstream()
    sidecar = make_sidecar(upstream.url)
    httpx.get(
        sidecar.url + "/v1/models",
        headers={"host": "user@evil.example/x", "x-test-id": "odd"},
    ).raise_for_status()
    seen = recorder.seen["odd"].headers
    assert "x-forwarded-host" not in seen
    assert seen["forwarded"] == "for=127.0.0.1;proto=http"


@pytest.mark.parametrize(
    ("client", "scheme", "host", "expected"),
    [
        (("10.0.0.7", 5), "https", "api.example", "for=10.0.0.7;host=api.example;proto=https"),
        (("::1", 5), "http", "[::1]:8000", 'for="[::1]";host="[::1]:8000";proto=http'),
        (None, "http", "", "proto=http"),
    ],
)  # fmt: skip
def test_forwarded_follows_rfc_7239(
    client: tuple[str, int] | None, scheme: str, host: str, expected: str
) -> None:
    """IPv6 addresses are bracketed and quoted, values with a colon quoted, nothing invented."""
    headers = dict(forwarding_headers(client, scheme, host))
    assert headers["Forwarded"] == expected
    assert headers["X-Forwarded-Proto"] == scheme
    assert headers.get("X-Forwarded-For") == (client[0] if client else None)


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_no_request_target_or_host_header_sends_traffic_to_another_server(
    make_upstream: MakeUpstream, make_sidecar: MakeSidecar
) -> None:
    """Absolute-form targets, ``//host`` paths, Host and X-Forwarded-Host naming a second live
    server on 127.0.0.1: every request lands on the upstream (or is refused), never there."""
    upstream, recorder = make_upstream()
    other, other_seen = make_upstream()
    sidecar = make_sidecar(upstream.url)
    there = f"127.0.0.1:{other.port}".encode()
    attempts = {
        b"absolute": b"GET http://" + there + b"/v1/models HTTP/1.1\r\nHost: " + there,
        b"absolute-https": b"GET https://" + there + b"/v1/models HTTP/1.1\r\nHost: " + there,
        b"scheme-relative": b"GET //" + there + b"/v1/models HTTP/1.1\r\nHost: " + there,
        b"userinfo": b"GET /v1/models HTTP/1.1\r\nHost: x@" + there,
        b"forwarded-host": b"GET /v1/models HTTP/1.1\r\nHost: " + there
        + b"\r\nX-Forwarded-Host: " + there + b"\r\nForwarded: host=" + there,
        b"asterisk": b"OPTIONS * HTTP/1.1\r\nHost: " + there,
        b"authority": b"CONNECT " + there + b" HTTP/1.1\r\nHost: " + there,
    }  # fmt: skip
    end = b"\r\nConnection: close\r\n\r\n"
    replies = {
        name: _raw(sidecar.server.port, req + b"\r\nx-test-id: " + name + end)
        for name, req in attempts.items()
    }
    assert other_seen.seen == {}  # the second server was never called
    for name in (b"absolute", b"absolute-https", b"userinfo", b"forwarded-host"):
        assert replies[name].startswith(b"HTTP/1.1 200"), (name, replies[name][:80])
        seen = recorder.seen[name.decode()]
        assert seen.path == "/v1/models"
        assert seen.headers["host"] == f"127.0.0.1:{upstream.port}"
    # ``//host/v1/models`` is a path on the upstream (which has no such route), not a host.
    assert recorder.seen["scheme-relative"].path == f"//127.0.0.1:{other.port}/v1/models"
    assert replies[b"asterisk"].startswith(b"HTTP/1.1 400")
    assert replies[b"authority"].startswith(b"HTTP/1.1 400")


def test_health_names_the_upstream_without_its_userinfo(
    make_upstream: MakeUpstream, make_sidecar: MakeSidecar
) -> None:
    """The unauthenticated health endpoint never shows a password written into the upstream."""
    upstream, _ = make_upstream()
    sidecar = make_sidecar(f"http://ops:hunter2-secret@127.0.0.1:{upstream.port}")
    health = httpx.get(sidecar.url + "/shadow/health").json()
    metrics = httpx.get(sidecar.url + "/shadow/metrics").text
    assert health["upstream"] == f"http://127.0.0.1:{upstream.port}"
    assert "hunter2" not in metrics
    assert httpx.get(sidecar.url + "/v1/models").status_code == 200
