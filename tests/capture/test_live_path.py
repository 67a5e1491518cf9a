"""The live path's HTTP/1.1 edges: pipelining, uploads, 100-continue, stale pooled connections,
flow control, the body cap, HTTP/1.0, and the added-latency stamp (real servers on 127.0.0.1)."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httptools
import httpx
import pytest

from shadow.serving import BackgroundServer
from tests.capture.conftest import Recorder, RunningSidecar

MakeUpstream = Callable[..., tuple[BackgroundServer, Recorder]]
MakeSidecar = Callable[..., RunningSidecar]


class _Reply:
    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.body = bytearray()


class _Replies:
    """Parses responses off a raw socket (httptools), as many as asked for."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.parser = httptools.HttpResponseParser(self)
        self.done: list[_Reply] = []
        self.current = _Reply()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.current.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self.current.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.current.body += body

    def on_message_complete(self) -> None:
        self.done.append(self.current)
        self.current = _Reply()

    def read(self, count: int) -> list[_Reply]:
        while len(self.done) < count:
            data = self.conn.recv(65536)
            assert data, "the sidecar closed the connection"
            self.parser.feed_data(data)
        return self.done[:count]


def _connect(sidecar: RunningSidecar) -> socket.socket:
    return socket.create_connection(("127.0.0.1", sidecar.server.port), timeout=10)


def test_pipelined_requests_are_answered_in_order_on_one_connection(
    make_upstream: MakeUpstream, make_sidecar: MakeSidecar
) -> None:
    """Three requests written at once get three responses, in the order they were sent."""
    upstream, recorder = make_upstream()
    sidecar = make_sidecar(upstream.url)
    chat = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":3}'
    with _connect(sidecar) as conn:
        conn.sendall(
            b"GET /v1/models HTTP/1.1\r\nHost: x\r\nx-test-id: p1\r\n\r\n"
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-test-id: p2\r\n"
            b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            b"GET /shadow/health HTTP/1.1\r\nHost: x\r\n\r\n" % (len(chat), chat)
        )
        first, second, third = _Replies(conn).read(3)
    assert first.status == second.status == third.status == 200
    assert b"shadow-large" in first.body
    assert b'"choices"' in second.body
    assert b'"status":"ok"' in third.body
    assert bytes(recorder.seen["p2"].body) == chat
    sidecar.stop()
    assert [r.request.path for r in sidecar.records()] == ["/v1/models", "/v1/chat/completions"]


def test_a_chunked_upload_streams_to_the_upstream_and_is_recorded(
    make_upstream: MakeUpstream, make_sidecar: MakeSidecar
) -> None:
    """A chunked request body, written in pieces, reaches the upstream whole and in the record."""
    upstream, recorder = make_upstream()
    sidecar = make_sidecar(upstream.url)
    body = b'{"model":"m","messages":[{"role":"user","content":"' + b"a" * 5000 + b'"}]}'
    pieces = [body[i : i + 1500] for i in range(0, len(body), 1500)]
    with _connect(sidecar) as conn:
        conn.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-test-id: chunked\r\n"
            b"content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        for piece in pieces:
            conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        conn.sendall(b"0\r\n\r\n")
        (reply,) = _Replies(conn).read(1)
    assert reply.status == 200
    assert bytes(recorder.seen["chunked"].body) == body
    sidecar.stop()
    (record,) = sidecar.records()
    assert record.request.body_bytes() == body


def test_expect_100_continue_is_answered_before_the_body_is_sent(
    make_upstream: MakeUpstream, make_sidecar: MakeSidecar
) -> None:
    """A client that waits for 100 Continue gets it, sends its body, and gets the answer."""
    upstream, recorder = make_upstream()
    sidecar = make_sidecar(upstream.url)
    body = b'{"model":"m","messages":[{"role":"user","content":"hello"}]}'
    with _connect(sidecar) as conn:
        conn.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-test-id: expect\r\n"
            b"expect: 100-continue\r\ncontent-length: %d\r\n\r\n" % len(body)
        )
        interim = b""
        while b"\r\n\r\n" not in interim:
            part = conn.recv(4096)
            assert part, "the sidecar closed the connection"
            interim += part
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        conn.sendall(body)
        replies = _Replies(conn)
        replies.parser.feed_data(interim[len(b"HTTP/1.1 100 Continue\r\n\r\n") :])
        (reply,) = replies.read(1)
    assert reply.status == 200
    assert bytes(recorder.seen["expect"].body) == body
    assert "expect" not in recorder.seen["expect"].headers


class _ClosingUpstream(socketserver.ThreadingTCPServer):
    """Answers the first request on each connection, then closes it when the next one arrives,
    before any response byte: what a keep-alive timeout on the upstream looks like."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ClosingHandler)
        self.connections = 0
        self.answered = 0
        self.lock = threading.Lock()


class _ClosingHandler(socketserver.BaseRequestHandler):
    server: _ClosingUpstream

    def handle(self) -> None:
        conn: socket.socket = self.request
        conn.settimeout(10)
        with self.server.lock:
            self.server.connections += 1
        for answer in (True, False):
            data = b""
            while b"\r\n\r\n" not in data:
                part = conn.recv(65536)
                if not part:
                    return
                data += part
            if not answer:
                return  # closed with the request unanswered
            conn.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"
            )
            with self.server.lock:
                self.server.answered += 1


@pytest.fixture
def closing_upstream() -> Iterator[_ClosingUpstream]:
    server = _ClosingUpstream()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_a_stale_pooled_connection_is_retried_once_on_a_fresh_one(
    closing_upstream: _ClosingUpstream, make_sidecar: MakeSidecar
) -> None:
    """A pooled connection that closes before answering costs the client nothing."""
    port = closing_upstream.server_address[1]
    sidecar = make_sidecar(f"http://127.0.0.1:{port}")
    with httpx.Client(timeout=10) as http:
        statuses = [http.get(sidecar.url + "/v1/models").status_code for _ in range(4)]
    assert statuses == [200] * 4
    assert closing_upstream.answered == 4
    assert closing_upstream.connections == 4  # each retry on a fresh connection
    assert (
        sidecar.app.metrics.value("shadow_capture_upstream_errors_total", kind="upstream_reset")
        == 0
    )


class _Slamming(socketserver.TCPServer):
    """Accepts each connection and closes it at once: an upstream out of connections."""

    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SlamHandler)


class _SlamHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.close()


def test_an_upstream_that_closes_new_connections_gets_each_client_a_502(
    make_sidecar: MakeSidecar,
) -> None:
    """Whether the close lands before or after the request goes on the connection, the client
    is answered 502 upstream_reset at once, and the sidecar keeps serving."""
    server = _Slamming()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        sidecar = make_sidecar(f"http://127.0.0.1:{server.server_address[1]}")
        with httpx.Client(timeout=10) as http:
            replies = [http.post(sidecar.url + "/v1/chat/completions", content=b"{}")
                       for _ in range(20)]  # fmt: skip
            health = http.get(sidecar.url + "/shadow/health")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    assert [r.status_code for r in replies] == [502] * 20
    assert all(r.json()["error"]["code"] == "upstream_reset" for r in replies)
    assert health.status_code == 200
    assert (
        sidecar.app.metrics.value("shadow_capture_upstream_errors_total", kind="upstream_reset")
        == 20
    )


async def _big(scope: Any, receive: Any, send: Any) -> None:
    """An upstream that streams 48 MiB in 1 MiB chunks, counting what it handed over."""
    if scope["type"] != "http":
        return
    await receive()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")]})  # fmt: skip
    for _ in range(_CHUNKS):
        await send({"type": "http.response.body", "body": _CHUNK, "more_body": True})
        _SENT.append(1)
    await send({"type": "http.response.body", "body": b""})
    _FINISHED.set()


_CHUNK = b"x" * (1 << 20)
_CHUNKS = 48
_SENT: list[int] = []
_FINISHED = threading.Event()


def test_a_slow_client_pauses_the_upstream_instead_of_filling_memory(
    make_sidecar: MakeSidecar,
) -> None:
    """While the client reads nothing the upstream cannot finish; reading lets it, byte for byte."""
    _SENT.clear()
    _FINISHED.clear()
    with BackgroundServer(_big, timeout_graceful_shutdown=1) as upstream:
        sidecar = make_sidecar(upstream.url, body_cap_bytes=1024)
        with _connect(sidecar) as conn:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            conn.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            # bounded wait on a condition that must not come true while nothing is read
            assert not _FINISHED.wait(1.0)
            assert len(_SENT) < _CHUNKS
            (reply,) = _Replies(conn).read(1)
        assert _FINISHED.wait(10)
    assert reply.status == 200
    assert len(reply.body) == _CHUNKS * len(_CHUNK)
    assert reply.headers[b"transfer-encoding"] == b"chunked"


def test_a_body_over_the_cap_passes_whole_and_is_recorded_truncated(
    make_upstream: MakeUpstream, make_sidecar: MakeSidecar
) -> None:
    """A 2 MiB upload streamed in pieces: the upstream gets all of it, the record the cap."""
    upstream, recorder = make_upstream()
    sidecar = make_sidecar(upstream.url, body_cap_bytes=65536)
    body = bytes(range(256)) * 8192  # 2 MiB, not JSON: the upstream answers 400
    with _connect(sidecar) as conn:
        conn.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-test-id: big\r\n"
            b"content-length: %d\r\n\r\n" % len(body)
        )
        for i in range(0, len(body), 256 * 1024):
            conn.sendall(body[i : i + 256 * 1024])
        (reply,) = _Replies(conn).read(1)
    assert reply.status == 400
    assert bytes(recorder.seen["big"].body) == body
    sidecar.stop()
    (record,) = sidecar.records()
    assert record.request.body_truncated
    assert record.request.body_bytes() == body[:65536]
    assert sidecar.app.metrics.value("shadow_capture_request_bytes_total") == len(body)


def test_http_1_0_gets_a_complete_answer_and_the_connection_closes(
    make_upstream: MakeUpstream, make_sidecar: MakeSidecar
) -> None:
    """An HTTP/1.0 client without keep-alive is answered, then the sidecar closes."""
    upstream, _ = make_upstream()
    sidecar = make_sidecar(upstream.url)
    with _connect(sidecar) as conn:
        conn.sendall(b"GET /v1/models HTTP/1.0\r\nHost: x\r\n\r\n")
        raw = b""
        while part := conn.recv(65536):
            raw += part
    assert raw.startswith(b"HTTP/1.1 200")
    assert b"connection: close" in raw.lower()
    assert raw.endswith(b"}")


def test_each_request_on_a_keep_alive_connection_is_timed_from_its_first_byte(
    make_upstream: MakeUpstream, make_sidecar: MakeSidecar
) -> None:
    """Each request is observed once; its record's latency covers the upstream's part."""
    upstream, _ = make_upstream()
    sidecar = make_sidecar(upstream.url)
    with _connect(sidecar) as conn:
        replies = _Replies(conn)
        for i in range(2):
            conn.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
            assert replies.read(i + 1)[i].status == 200
    metrics = sidecar.app.metrics
    assert metrics.value("shadow_capture_added_latency_seconds_count") == 2
    sidecar.stop()
    records = sidecar.records()
    assert len(records) == 2
    for record in records:
        assert record.timing.latency_ms is not None
        assert record.timing.latency_ms > 0
    assert records[0].captured_at <= records[1].captured_at


def test_stopping_lets_an_answer_in_flight_finish_and_records_it(
    make_upstream: MakeUpstream, make_sidecar: MakeSidecar
) -> None:
    """A stop during a streamed answer closes the listener but lets that answer complete."""
    upstream, _ = make_upstream(time_scale=1.0)  # 22 ms per token
    sidecar = make_sidecar(upstream.url, shutdown_grace_s=10)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20,
            "stream": True}  # fmt: skip
    stopper = threading.Thread(target=sidecar.stop)
    with (
        httpx.Client(timeout=10) as http,
        http.stream("POST", sidecar.url + "/v1/chat/completions", json=body) as reply,
    ):
        lines = reply.iter_lines()
        first = next(lines)
        stopper.start()
        assert _refuses_connections(sidecar.server.port, within_s=5)  # stopping, mid-answer
        rest = list(lines)
    stopper.join(30)
    assert not stopper.is_alive()
    assert reply.status_code == 200
    assert first.startswith("data: ")
    assert rest[-2:] == ["data: [DONE]", ""] or rest[-1] == "data: [DONE]"
    (record,) = sidecar.records()
    assert record.error is None
    assert record.response is not None
    assert record.response.status == 200


def _refuses_connections(port: int, within_s: float) -> bool:
    """Whether the port stops accepting connections within ``within_s`` (a bounded poll)."""
    deadline = time.monotonic() + within_s
    tick = threading.Event()  # never set: a timed wait between attempts, not a bare sleep
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return True
        tick.wait(0.01)
    return False
