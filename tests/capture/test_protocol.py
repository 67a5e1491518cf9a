"""The sidecar's protocol stamps each request's first byte, which its added latency counts from."""

from __future__ import annotations

import socket
import time
from typing import Any

from capture.protocol import RECEIVED_AT, StampingProtocol
from shadow.serving import BackgroundServer


def test_each_request_on_a_connection_is_stamped_when_its_first_byte_arrives() -> None:
    """The stamp is taken before the app runs, once per request (keep-alive included)."""
    seen: list[tuple[float, float]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        entered = time.perf_counter()
        await receive()
        seen.append((scope[RECEIVED_AT], entered))
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})

    server = BackgroundServer(app)
    server._config.http = StampingProtocol  # what `shadow capture` serves with
    before = time.perf_counter()
    server.start()
    try:
        with socket.create_connection((server.host, server.port), timeout=10) as conn:
            for _ in range(2):
                conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                reply = b""
                while not reply.endswith(b"ok"):
                    part = conn.recv(4096)
                    assert part, "the server closed the connection"
                    reply += part
    finally:
        server.stop()
    assert len(seen) == 2
    for stamped, entered in seen:
        assert before <= stamped <= entered
    assert seen[0][0] < seen[1][0]
