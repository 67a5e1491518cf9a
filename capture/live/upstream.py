"""The upstream side of the live path: keep-alive connections to the one upstream, and a pool.

Each connection is an asyncio Protocol with an ``httptools`` response parser that hands the
response head and body chunks to whoever holds the connection (a :class:`ResponseHandler`) as
they arrive. Timeouts are loop timers, not tasks: the read timeout is the longest silence
allowed between two reads of a pending response (aiohttp's ``sock_read``, as before).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Protocol, cast
from urllib.parse import urlsplit

import httptools

__all__ = ["ResponseHandler", "Upstream", "UpstreamConnection"]


class ResponseHandler(Protocol):
    """What a connection reports to the request it carries."""

    def on_response_head(
        self, status: int, phrase: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None: ...

    def on_response_body(self, chunk: bytes) -> None: ...

    def on_response_end(self) -> None: ...

    def on_upstream_failed(self, kind: str, detail: str, retry: bool) -> None: ...

    def on_upstream_writable(self, writable: bool) -> None: ...

    def flush_client(self) -> None:
        """Write what the last read produced to the client, in one call."""
        ...

    @property
    def request_sent(self) -> bool:
        """Whether the whole request went out (else the connection cannot be reused)."""
        ...


class Upstream:
    """The one upstream (``http(s)://host[:port][/prefix]``) and its idle connections."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 300.0,
        ca_file: str = "",
        idle_max: int = 256,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream {url!r} must be an http:// or https:// URL")
        self.url = url
        self.display = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
        """The URL without userinfo (for health output and errors)."""
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        authority = f"[{self.host}]" if ":" in self.host else self.host
        self.authority = (authority if parts.port is None else f"{authority}:{parts.port}").encode()
        self.prefix = parts.path.rstrip("/").encode("latin-1")
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":  # always verified: the system store, or the given bundle
            self.ssl = ssl.create_default_context(cafile=ca_file or None)
        self.idle: list[UpstreamConnection] = []
        self.idle_max = idle_max
        self.open: set[UpstreamConnection] = set()

    def take(self) -> UpstreamConnection | None:
        """An idle keep-alive connection, most recently used first, or None."""
        while self.idle:
            conn = self.idle.pop()
            if conn.usable:
                conn.reused = True
                return conn
        return None

    async def connect(self) -> UpstreamConnection:
        """A new connection (raises OSError, ssl.SSLError or TimeoutError)."""
        loop = asyncio.get_running_loop()
        _, conn = await asyncio.wait_for(
            loop.create_connection(
                lambda: UpstreamConnection(self),
                self.host,
                self.port,
                ssl=self.ssl,
                server_hostname=self.host if self.ssl else None,
            ),
            self.connect_timeout_s,
        )
        return conn

    def give_back(self, conn: UpstreamConnection) -> None:
        """Return a connection whose response is complete, or close it if it cannot be reused."""
        if conn.usable and conn.reusable and len(self.idle) < self.idle_max:
            conn.handler = None
            self.idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Close every connection."""
        for conn in list(self.open):
            conn.close()
        self.idle.clear()


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection to the upstream."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.transport: asyncio.Transport | None = None
        self.handler: ResponseHandler | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.reused = False
        self.reusable = True
        self.head_only = False
        self.got_bytes = False
        self.until_close = False
        self._phrase = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._framed = False
        self._informational = False
        self._timer: asyncio.TimerHandle | None = None
        self._paused = False
        self._last = 0.0
        self._loop = asyncio.get_event_loop()

    @property
    def usable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    # -- driving a request
    def begin(self, handler: ResponseHandler, head: bytes, *, head_only: bool) -> None:
        """Send a request head; the response goes to ``handler``."""
        assert self.transport is not None
        self.handler = handler
        self.head_only = head_only
        self.got_bytes = False
        self.until_close = False
        self._framed = False
        if self._paused:
            self.resume()
        self.transport.write(head)
        self._last = self._loop.time()
        self._timer = self._loop.call_at(self._last + self.upstream.read_timeout_s, self._check)

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def pause(self) -> None:
        if not self._paused and self.transport is not None and not self.transport.is_closing():
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.transport.is_closing():
            self._paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        """Close now (its handler, if any, is not told)."""
        self.handler = None
        self._stop_timer()
        if self.transport is not None:
            self.transport.close()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        idle = self._loop.time() - self._last
        timeout = self.upstream.read_timeout_s
        if idle < timeout:
            self._timer = self._loop.call_at(self._last + timeout, self._check)
            return
        self._timer = None
        self._fail("upstream_timeout", "", retry=False)

    def _fail(self, kind: str, detail: str, *, retry: bool) -> None:
        handler = self.handler
        self.close()
        if handler is not None:
            handler.on_upstream_failed(kind, detail, retry)

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's is not a subclass
        self.upstream.open.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.upstream.open.discard(self)
        self.transport = None
        handler = self.handler
        if handler is None:
            return
        self.handler = None
        self._stop_timer()
        if self.until_close:  # a response framed by the end of the connection
            handler.on_response_end()
            return
        detail = str(exc) if exc else "the upstream closed the connection"
        handler.on_upstream_failed("upstream_reset", detail, self.reused and not self.got_bytes)

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.on_upstream_writable(False)

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.on_upstream_writable(True)

    def data_received(self, data: bytes) -> None:
        if self.handler is None:  # bytes nobody asked for: this connection is done
            self.close()
            return
        handler = self.handler
        self.got_bytes = True
        self._last = self._loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.reusable = False
            self._fail("upstream_reset", f"invalid response: {exc}", retry=False)
        handler.flush_client()

    # -- httptools callbacks
    def on_message_begin(self) -> None:
        self._headers = []
        self._phrase = b""
        self._framed = False

    def on_status(self, phrase: bytes) -> None:
        self._phrase += phrase

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"content-length" or lower == b"transfer-encoding":
            self._framed = True
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        self._informational = status < 200
        if self._informational or self.handler is None:
            return  # 1xx: the final response follows
        if not self.parser.should_keep_alive():
            self.reusable = False
        handler = self.handler
        if self.head_only or status in (204, 304):
            handler.on_response_head(status, self._phrase, self._headers)
            if self.head_only:
                self.reusable = False  # the parser would wait for a body that never comes
                self._done()
            return
        if not self._framed:
            self.until_close = True
            self.reusable = False
        handler.on_response_head(status, self._phrase, self._headers)

    def on_body(self, body: bytes) -> None:
        if self.handler is not None and not self.head_only:
            self.handler.on_response_body(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if not self.head_only:
            self._done()

    def _done(self) -> None:
        self._stop_timer()
        handler = self.handler
        if handler is None:
            return
        self.handler = None
        if not handler.request_sent:
            self.reusable = False
        self.upstream.give_back(self)
        handler.on_response_end()
