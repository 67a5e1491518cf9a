"""The live path: forward one ASGI request to the configured upstream and stream the answer back.

Only ever to the one upstream: the request target's path and query are appended to the
upstream's base URL, so absolute-form targets, CONNECT and forged Host headers cannot send
traffic anywhere else. Bodies pass through byte for byte (the client does not decompress: a
gzip request reaches the upstream gzipped; only the record is decoded, off the path), and
response chunks reach the client as they arrive. What a client claims about earlier hops
(``Forwarded``, every ``X-Forwarded-*``, ``X-Real-IP``) is dropped; the sidecar sets its own
``X-Forwarded-For`` (the peer's address), ``X-Forwarded-Proto``, ``X-Forwarded-Host`` (the Host
the client asked for) and ``Forwarded``. Serve it with uvicorn's ``proxy_headers`` off (the CLI
does), or uvicorn itself would take a local client's ``X-Forwarded-For`` as its address.

The forwarding client is aiohttp: on this 2-core machine httpx's default transport measured
several times slower under concurrency (``bench/capture_overhead.py`` reruns the comparison).

The only work on this path for the tee is appending bytes (up to a cap) and reading clocks into
an :class:`~capture.exchange.Exchange`; building the record happens off the path.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp
import msgspec
from yarl import URL

from capture.exchange import Exchange, TraceIds
from capture.metrics import CaptureMetrics
from capture.protocol import RECEIVED_AT

__all__ = ["Forwarder", "Receive", "Scope", "Send", "forwarding_headers"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Hop-by-hop headers (RFC 9110 §7.6.1) and the ones the proxy sets itself.
_DROP_REQUEST = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
        b"trailer", b"trailers", b"transfer-encoding", b"upgrade", b"host", b"content-length",
        b"expect", b"proxy-connection",
    }
)  # fmt: skip
_DROP_RESPONSE = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
        b"trailer", b"trailers", b"transfer-encoding", b"upgrade", b"proxy-connection",
    }
)  # fmt: skip
# What a client says about earlier hops is never passed on: the sidecar is the first hop it
# trusts, so it strips these (and every X-Forwarded-*) and sets its own.
_FORWARDING = frozenset({b"forwarded", b"x-real-ip"})
_JSON = (b"content-type", b"application/json")
_AUTHORITY = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?"
)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _error_body(kind: str, message: str) -> bytes:
    return msgspec.json.encode({"error": {"message": message, "type": kind, "code": kind}})


class Forwarder:
    """Forwards requests to one upstream with a pooled aiohttp session."""

    def __init__(
        self,
        upstream: str,
        *,
        metrics: CaptureMetrics,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 300.0,
        body_cap: int = 1 << 20,
        ca_file: str = "",
    ) -> None:
        base = URL(upstream)
        if base.scheme not in ("http", "https") or not base.host:
            raise ValueError(f"upstream {upstream!r} must be an http:// or https:// URL")
        self.upstream = base
        self._scheme = base.scheme
        self._host = base.host
        self._port = base.explicit_port
        self._prefix = base.raw_path.rstrip("/")
        self.metrics = metrics
        self.body_cap = body_cap
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout_s, sock_read=read_timeout_s
        )
        self._session: aiohttp.ClientSession | None = None
        self._ids = TraceIds()
        # https upstreams are always verified: the system trust store, or the given CA bundle.
        self._ssl: ssl.SSLContext | bool = True
        if ca_file:
            self._ssl = ssl.create_default_context(cafile=ca_file)

    async def start(self) -> None:
        """Open the connection pool (call on the serving event loop)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=0, ttl_dns_cache=300, keepalive_timeout=30, ssl=self._ssl
                ),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
                timeout=self._timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
            )

    async def aclose(self) -> None:
        """Close the connection pool; safe to call twice."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _url(self, raw_path: bytes, query: bytes) -> URL:
        return URL.build(
            scheme=self._scheme,
            host=self._host,
            port=self._port,
            path=self._prefix + raw_path.decode("latin-1"),
            query_string=query.decode("latin-1"),
            encoded=True,
        )

    async def handle(
        self, scope: Scope, receive: Receive, send: Send, *, capture: bool
    ) -> Exchange | None:
        """Forward one request; returns the filled exchange when ``capture`` is set."""
        started_ns = time.time_ns()
        t0 = time.perf_counter()
        received: float = scope.get(RECEIVED_AT, t0)  # the first byte in (capture.protocol)
        method: str = scope["method"]
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("latin-1")
        query: bytes = scope.get("query_string", b"")
        if method == "CONNECT" or not raw_path.startswith(b"/"):
            # Absolute-form targets and CONNECT would make this an open proxy.
            await _reply(send, 400, "bad_request", "the sidecar only forwards origin-form paths")
            self.metrics.count_status(400)
            return None
        headers, client_length = self._upstream_headers(scope)
        ex = None
        if capture:
            ex = Exchange(
                trace_id=self._ids.next(),
                started_ns=started_ns,
                t0=t0,
                method=method,
                path=raw_path.decode("latin-1"),
                query=query.decode("latin-1"),
                request_headers=scope["headers"],
                cap=self.body_cap,
            )
        task = asyncio.current_task()
        assert task is not None
        watcher: asyncio.Task[None] | None = None
        state = _State()
        upstream_s: float | None = None
        try:
            first = await receive()
            body: bytes | AsyncIterator[bytes]
            chunk = first.get("body", b"")
            if not first.get("more_body", False):
                body = chunk
                self._tee_request(ex, chunk)
                watcher = asyncio.create_task(_watch_disconnect(receive, task, state))
            else:
                if client_length is not None:
                    headers.append(("Content-Length", client_length))

                async def stream_body() -> AsyncIterator[bytes]:
                    nonlocal watcher
                    self._tee_request(ex, chunk)
                    yield chunk
                    while True:
                        message = await receive()
                        if message["type"] == "http.disconnect":
                            state.disconnected = True
                            raise ConnectionResetError("client disconnected")
                        part = message.get("body", b"")
                        self._tee_request(ex, part)
                        if part:
                            yield part
                        if not message.get("more_body", False):
                            break
                    watcher = asyncio.create_task(_watch_disconnect(receive, task, state))

                body = stream_body()
            upstream_s = await self._forward(
                method, raw_path, query, headers, body, send, ex, state
            )
        except asyncio.CancelledError:
            if not state.disconnected:
                raise
            task.uncancel()
            self._fail(ex, "client_disconnected", None)
        finally:
            state.done = True
            if watcher is not None:
                watcher.cancel()
        if ex is not None:
            ex.finish()
        if upstream_s is not None:
            # first byte in to last byte handed to the server, minus the wait on the upstream
            taken = time.perf_counter() - received
            self.metrics.added_latency.observe(max(0.0, taken - upstream_s))
        return ex

    def _tee_request(self, ex: Exchange | None, chunk: bytes) -> None:
        self.metrics.request_bytes.inc(len(chunk))
        if ex is not None and chunk:
            ex.request_body.add(chunk)

    def _upstream_headers(self, scope: Scope) -> tuple[list[tuple[str, str]], str | None]:
        headers: list[tuple[str, str]] = []
        host = ""
        length = None
        for name, value in scope["headers"]:
            if name in _DROP_REQUEST or name in _FORWARDING or name.startswith(b"x-forwarded-"):
                if name == b"content-length":
                    length = value.decode("latin-1")
                elif name == b"host":
                    host = value.decode("latin-1")
                continue
            headers.append((name.decode("latin-1"), value.decode("latin-1")))
        headers.extend(forwarding_headers(scope.get("client"), scope.get("scheme", "http"), host))
        return headers, length

    async def _forward(
        self,
        method: str,
        raw_path: bytes,
        query: bytes,
        headers: list[tuple[str, str]],
        body: bytes | AsyncIterator[bytes],
        send: Send,
        ex: Exchange | None,
        state: _State,
    ) -> float | None:
        """Forward and stream the answer; the seconds spent on the upstream, None on failure."""
        assert self._session is not None, "Forwarder.start() was not called"
        sent_at = time.perf_counter()
        try:
            async with self._session.request(
                method,
                self._url(raw_path, query),
                headers=headers,
                data=body,
                allow_redirects=False,
                compress=None,
            ) as resp:
                out_headers = [
                    (name.lower(), value)
                    for name, value in resp.raw_headers
                    if name.lower() not in _DROP_RESPONSE
                ]
                if ex is not None:
                    ex.start_response(resp.status, out_headers)
                await send(
                    {"type": "http.response.start", "status": resp.status, "headers": out_headers}
                )
                state.started = True
                self.metrics.count_status(resp.status)
                async for chunk in resp.content.iter_any():
                    self.metrics.response_bytes.inc(len(chunk))
                    if ex is not None:
                        ex.add_response_chunk(chunk)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                upstream_done = time.perf_counter()
            state.done = True  # from here a disconnect no longer cancels anything
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (TimeoutError, aiohttp.ServerTimeoutError):
            await self._upstream_failed(send, ex, state, 504, "upstream_timeout")
            return None
        except aiohttp.ClientConnectorError as exc:
            await self._upstream_failed(send, ex, state, 502, "upstream_unreachable", str(exc))
            return None
        except (aiohttp.ClientError, ConnectionResetError) as exc:
            if state.disconnected:
                self._fail(ex, "client_disconnected", None)
                return None
            await self._upstream_failed(send, ex, state, 502, "upstream_reset", str(exc))
            return None
        upstream = upstream_done - sent_at
        if ex is not None:
            ex.upstream_ms = upstream * 1000.0
        return upstream

    async def _upstream_failed(
        self,
        send: Send,
        ex: Exchange | None,
        state: _State,
        status: int,
        kind: str,
        detail: str = "",
    ) -> None:
        self.metrics.upstream_errors.labels(kind).inc()
        message = f"shadow capture: {kind.replace('_', ' ')}"
        if detail:
            message += f" ({detail})"
        state.done = True
        if not state.started:
            body = _error_body(kind, message)
            await send({"type": "http.response.start", "status": status, "headers": [_JSON]})
            await send({"type": "http.response.body", "body": body, "more_body": False})
            self.metrics.count_status(status)
            self._fail(ex, kind, (status, body))
        else:  # headers already went out: all we can do is end the response early
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            self._fail(ex, kind, None)

    @staticmethod
    def _fail(ex: Exchange | None, kind: str, reply: tuple[int, bytes] | None) -> None:
        if ex is None:
            return
        ex.error = kind
        if reply is not None:
            ex.status, body = reply
            ex.response_headers = [_JSON]
            ex.response_body.add(body)


class _State:
    __slots__ = ("disconnected", "done", "started")

    def __init__(self) -> None:
        self.disconnected = False
        self.done = False
        self.started = False


async def _watch_disconnect(receive: Receive, task: asyncio.Task[Any], state: _State) -> None:
    """Cancel the forwarding task when the client goes away before the response is complete."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if not state.done:
                state.disconnected = True
                task.cancel()
            return


def forwarding_headers(
    client: tuple[str, int] | list[Any] | None, scheme: str, host: str
) -> list[tuple[str, str]]:
    """The sidecar's own ``X-Forwarded-For/Proto/Host`` and ``Forwarded`` (RFC 7239) headers.

    ``client`` is the peer's address (the ASGI scope's), ``scheme`` how it reached the sidecar,
    and ``host`` the Host it asked for (left out unless it is a well-formed host[:port]).
    """
    out: list[tuple[str, str]] = []
    pairs: list[str] = []
    if client:
        address = str(client[0])
        out.append(("X-Forwarded-For", address))
        pairs.append("for=" + _quoted(f"[{address}]" if ":" in address else address))
    if host and not _AUTHORITY.fullmatch(host):
        host = ""
    if host:
        out.append(("X-Forwarded-Host", host))
        pairs.append("host=" + _quoted(host))
    out.append(("X-Forwarded-Proto", scheme))
    pairs.append("proto=" + _quoted(scheme))
    out.append(("Forwarded", ";".join(pairs)))
    return out


def _quoted(value: str) -> str:
    return value if _TOKEN.fullmatch(value) else f'"{value}"'


async def _reply(send: Send, status: int, kind: str, message: str) -> None:
    body = _error_body(kind, message)
    await send({"type": "http.response.start", "status": status, "headers": [_JSON]})
    await send({"type": "http.response.body", "body": body, "more_body": False})
