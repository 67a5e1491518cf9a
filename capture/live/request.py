"""One request on the live path, from its first byte in to its last byte out.

Only ever to the one upstream: the target's path and query are appended to the upstream's base
path, so absolute-form targets are reduced to their path, CONNECT and other forms are refused
(400), and a forged Host cannot send traffic anywhere else. Bodies pass byte for byte (no
decompression). The added-latency figure is first byte in to last byte out minus the time
spent on the upstream (request sent to last response byte received).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Protocol

import httptools

from capture.exchange import Exchange
from capture.live.context import Context
from capture.live.heads import (
    DROP_REQUEST,
    DROP_RESPONSE,
    JSON,
    error_body,
    forwarding_headers,
    reason,
    simple_response,
)
from capture.live.upstream import UpstreamConnection

__all__ = ["Client", "Request"]

log = logging.getLogger("shadow.capture")

_RETRY_KEEP = 1 << 20  # request bytes kept to resend on a fresh connection once
_BUFFER_PAUSE = 1 << 18  # request bytes buffered while connecting before reading pauses
_NO_BODY_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"DELETE"})
_TERMINATOR = b"0\r\n\r\n"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_background: set[asyncio.Task[None]] = set()


class Client(Protocol):
    """The client connection a request arrived on (capture.live.server.ClientConnection)."""

    ctx: Context
    peer: tuple[str, int] | None
    write_paused: bool

    def write(self, data: bytes) -> None: ...

    def pause_for_upload(self, pause: bool) -> None: ...

    def finished(self, request: Request, *, keep_alive: bool) -> None: ...


class Request:
    """State of one request; the upstream connection reports to it (a ResponseHandler)."""

    __slots__ = (
        "body_complete", "body_pending", "capture", "chunked_in", "chunked_out", "conn",
        "continue_sent", "done", "ex", "expect_continue", "head", "host", "keep_alive",
        "kept_bytes", "method", "out", "pending_bytes", "raw_headers", "received", "rejected",
        "request_sent", "response_started", "retried", "retry_keep", "sent_at", "up", "url",
        "version",
    )  # fmt: skip

    def __init__(self, conn: Client, received: float) -> None:
        self.conn = conn
        self.received = received
        self.url = b""
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.method = b""
        self.version = "1.1"
        self.keep_alive = True
        self.head = b""
        self.host = b""
        self.rejected: bytes | None = None
        self.ex: Exchange | None = None
        self.capture = False
        self.chunked_in = False
        self.chunked_out = False
        self.expect_continue = False
        self.continue_sent = False
        self.body_pending: list[bytes] = []
        self.pending_bytes = 0
        self.body_complete = False
        self.request_sent = False
        self.up: UpstreamConnection | None = None
        self.sent_at = 0.0
        self.response_started = False
        self.done = False
        self.retried = False
        self.retry_keep: list[bytes] | None = None
        self.kept_bytes = 0
        self.out: list[bytes] = []

    # -- the client's side
    def head_complete(self, method: bytes, version: str, keep_alive: bool) -> None:
        """Parse the target, answer admin paths, decide sampling, build the upstream head."""
        self.method, self.version, self.keep_alive = method, version, keep_alive
        ctx = self.conn.ctx
        url = self.url
        if url[:1] != b"/" and method != b"CONNECT" and url[:4].lower() == b"http":
            try:  # absolute-form: only its path and query are used
                parsed = httptools.parse_url(url)
            except httptools.HttpParserInvalidURLError:
                url = b""
            else:
                url = (parsed.path or b"/") + (b"?" + parsed.query if parsed.query else b"")
        if method == b"CONNECT" or url[:1] != b"/":
            self.rejected = simple_response(
                400,
                error_body("bad_request", "the sidecar only forwards origin-form paths"),
                [JSON],
                close=not keep_alive,
            )
            ctx.metrics.count_status(400)
            return
        path, _, query = url.partition(b"?")
        admin = ctx.admin(path)
        if admin is not None:
            body, headers = admin
            self.rejected = simple_response(200, body, headers, close=not keep_alive)
            return
        lowered = [(name.lower(), value) for name, value in self.raw_headers]
        out = [b"%s %s%s HTTP/1.1\r\nHost: %s\r\n" % (method, ctx.upstream.prefix, url,
                                                      ctx.upstream.authority)]  # fmt: skip
        length = b""
        for (name, value), (lower, _) in zip(self.raw_headers, lowered, strict=True):
            if lower in DROP_REQUEST or lower.startswith(b"x-forwarded-"):
                if lower == b"content-length":
                    length = value
                elif lower == b"host":
                    self.host = value
                elif lower == b"transfer-encoding":
                    self.chunked_in = b"chunked" in value.lower()
                elif lower == b"expect":
                    self.expect_continue = value.lower() == b"100-continue"
                continue
            out.append(name + b": " + value + b"\r\n")
        forwarded = forwarding_headers(self.conn.peer, ctx.scheme, self.host.decode("latin-1"))
        out.extend(f"{name}: {value}\r\n".encode("latin-1") for name, value in forwarded)
        if self.chunked_in:
            out.append(b"Transfer-Encoding: chunked\r\n")
        elif length:
            out.append(b"Content-Length: " + length + b"\r\n")
        elif method not in _NO_BODY_METHODS:
            out.append(b"Content-Length: 0\r\n")
        out.append(b"\r\n")
        self.head = b"".join(out)
        self.capture = ctx.sample(lowered)
        if not self.capture:
            ctx.metrics.records_unsampled.inc()
            return
        self.ex = Exchange(
            trace_id=ctx.ids.next(),
            started_ns=time.time_ns(),
            t0=self.received,
            method=method.decode("latin-1"),
            path=path.decode("latin-1"),
            query=query.decode("latin-1"),
            request_headers=lowered,
            cap=ctx.body_cap,
        )

    def body_part(self, chunk: bytes) -> None:
        if self.done or self.rejected is not None:
            return
        self.conn.ctx.metrics.request_bytes.inc(len(chunk))
        if self.ex is not None:
            self.ex.request_body.add(chunk)
        self._pass(b"%x\r\n%s\r\n" % (len(chunk), chunk) if self.chunked_in else chunk)

    def _pass(self, data: bytes) -> None:
        """Request bytes for the upstream: sent now, or held until a connection is ready."""
        if self.retry_keep is not None:
            self._keep(data)
        if self.up is not None:
            self.up.write(data)
            return
        self.body_pending.append(data)
        self.pending_bytes += len(data)
        if self.pending_bytes > _BUFFER_PAUSE:
            self.conn.pause_for_upload(True)

    def body_end(self) -> None:
        if self.body_complete:
            return
        self.body_complete = True
        if self.done or self.rejected is not None:
            return
        if self.chunked_in:
            self._pass(_TERMINATOR)
        if self.up is not None:
            self.request_sent = True

    def activate(self) -> None:
        """Start forwarding (this is the connection's oldest unanswered request)."""
        if self.rejected is not None:
            self.conn.write(self.rejected)
            self.done = True
            self.conn.finished(self, keep_alive=self.keep_alive)
            return
        if self.expect_continue and not self.body_complete:
            self.conn.write(_CONTINUE)
            self.continue_sent = True

    def flush_upstream(self) -> None:
        """After a read from the client: send what is ready to an upstream connection."""
        if self.up is not None or self.done or self.rejected is not None or not self.head:
            return
        if self.up is None and self.sent_at == 0.0:
            self.sent_at = -1.0  # claimed: one connection attempt at a time
            conn = self.conn.ctx.upstream.take()
            if conn is not None:
                conn.reused = True
                self._send_on(conn)
            else:
                task = asyncio.ensure_future(self._connect())
                _background.add(task)
                task.add_done_callback(_background.discard)

    async def _connect(self) -> None:
        upstream = self.conn.ctx.upstream
        try:
            conn = await upstream.connect()
        except TimeoutError:
            self.on_upstream_failed("upstream_timeout", "", False)
            return
        except (OSError, ssl.SSLError, ssl.CertificateError) as exc:
            self.on_upstream_failed("upstream_unreachable", _describe(exc, upstream.display), False)
            return
        if self.done:
            upstream.give_back(conn)
            return
        if not conn.usable:
            # Closed before a byte went on it (an upstream out of connections does this): the
            # client gets a 502 now; it must never wait on a connection that is gone.
            detail = f"{upstream.display} closed a new connection at once"
            self.on_upstream_failed("upstream_reset", detail, False)
            return
        try:
            self._send_on(conn)
        except Exception as exc:  # a bug here must not leave the client waiting for ever
            log.exception("could not send a request on a new upstream connection")
            conn.close()
            self.on_upstream_failed("upstream_reset", type(exc).__name__, False)

    def _send_on(self, conn: UpstreamConnection) -> None:
        self.up = conn
        head_only = self.method == b"HEAD"
        pending, self.body_pending, self.pending_bytes = self.body_pending, [], 0
        if conn.reused and not self.retried:
            self.retry_keep, self.kept_bytes = [], 0
            for data in pending:
                self._keep(data)
        self.sent_at = time.perf_counter()
        conn.begin(self, b"".join([self.head, *pending]), head_only=head_only)
        if self.body_complete:
            self.request_sent = True
        else:
            self.conn.pause_for_upload(False)
        if self.conn.write_paused:
            conn.pause()

    def _keep(self, data: bytes) -> None:
        keep = self.retry_keep
        assert keep is not None
        keep.append(data)
        self.kept_bytes += len(data)
        if self.kept_bytes > _RETRY_KEEP:
            self.retry_keep = None  # too much to resend: a failure is final

    def client_writable(self, writable: bool) -> None:
        if self.up is not None:
            if writable:
                self.up.resume()
            else:
                self.up.pause()

    def client_lost(self) -> None:
        """The client went away: drop the upstream request and record why."""
        if self.done:
            return
        self.done = True
        self.out.clear()
        if self.up is not None:
            self.up.close()  # discarded, never reused
            self.up = None
        if self.sent_at != 0.0 and self.ex is not None:
            self._fail("client_disconnected", None)
            self._submit()

    # -- the upstream's side (capture.live.upstream.ResponseHandler)
    def on_upstream_writable(self, writable: bool) -> None:
        self.conn.pause_for_upload(not writable)

    def on_response_head(
        self, status: int, phrase: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None:
        if self.done:
            return
        self.response_started = True
        lines = [b"HTTP/1.1 %d %s" % (status, phrase or reason(status))]
        kept: list[tuple[bytes, bytes]] = []
        length = False
        for name, value in headers:
            lower = name.lower()
            if lower in DROP_RESPONSE:
                continue
            if lower == b"content-length":
                length = True
            kept.append((lower, value))
            lines.append(name + b": " + value)
        bodiless = self.method == b"HEAD" or status in (204, 304)
        if not length and not bodiless:
            if self.version == "1.1":
                self.chunked_out = True
                lines.append(b"transfer-encoding: chunked")
            else:
                self.keep_alive = False  # HTTP/1.0: the end of the connection ends the body
        if not self.keep_alive:
            lines.append(b"connection: close")
        elif self.version == "1.0":
            lines.append(b"connection: keep-alive")
        metrics = self.conn.ctx.metrics
        metrics.count_status(status)
        if self.ex is not None:
            self.ex.start_response(status, kept)
        self.out.append(b"\r\n".join(lines) + b"\r\n\r\n")

    def on_response_body(self, chunk: bytes) -> None:
        if self.done:
            return
        self.conn.ctx.metrics.response_bytes.inc(len(chunk))
        if self.ex is not None:
            self.ex.add_response_chunk(chunk)
        self.out.append(b"%x\r\n%s\r\n" % (len(chunk), chunk) if self.chunked_out else chunk)

    def flush_client(self) -> None:
        if self.out:
            out, self.out = self.out, []
            self.conn.write(out[0] if len(out) == 1 else b"".join(out))

    def on_response_end(self) -> None:
        if self.done:
            return
        upstream_done = time.perf_counter()
        self.done = True
        self.up = None
        if self.chunked_out:
            self.out.append(_TERMINATOR)
        self.flush_client()
        upstream = upstream_done - self.sent_at
        if self.ex is not None:
            self.ex.upstream_ms = upstream * 1000.0
        taken = time.perf_counter() - self.received
        self.conn.ctx.metrics.added_latency.observe(max(0.0, taken - upstream))
        self._submit()
        self.conn.finished(self, keep_alive=self.keep_alive and self.body_complete)

    def on_upstream_failed(self, kind: str, detail: str, retry: bool) -> None:
        if self.done:
            return
        self.up = None
        if retry and not self.retried and self.retry_keep is not None:
            # A pooled connection the upstream had closed: send once more on a fresh one.
            self.retried = True
            self.body_pending, self.retry_keep = self.retry_keep, None
            self.pending_bytes = self.kept_bytes
            self.request_sent = False
            self.sent_at = 0.0
            self.flush_upstream()
            return
        self.done = True
        metrics = self.conn.ctx.metrics
        metrics.upstream_errors.labels(kind).inc()
        message = f"shadow capture: {kind.replace('_', ' ')}" + (f" ({detail})" if detail else "")
        keep_alive = self.keep_alive and self.body_complete
        self.flush_client()
        if not self.response_started:
            status = 504 if kind == "upstream_timeout" else 502
            body = error_body(kind, message)
            self.conn.write(simple_response(status, body, [JSON], close=not keep_alive))
            metrics.count_status(status)
            self._fail(kind, (status, body))
        else:  # the head already went out: all that is left is ending the response early
            if self.chunked_out:
                self.conn.write(_TERMINATOR)
            else:
                keep_alive = False
            self._fail(kind, None)
        self._submit()
        self.conn.finished(self, keep_alive=keep_alive)

    def _fail(self, kind: str, reply: tuple[int, bytes] | None) -> None:
        ex = self.ex
        if ex is None:
            return
        ex.error = kind
        if reply is not None:
            ex.status, body = reply
            ex.response_headers = [JSON]
            ex.response_body.add(body)

    def _submit(self) -> None:
        ex, self.ex = self.ex, None
        if ex is not None:
            ex.finish()
            self.conn.ctx.submit(ex)


def _describe(exc: BaseException, url: str) -> str:
    text = str(exc) or type(exc).__name__
    return f"cannot connect to {url}: {text}"
