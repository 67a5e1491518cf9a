"""The client side of the live path: one asyncio Protocol per client connection.

``httptools`` parses requests as bytes arrive; keep-alive and pipelined requests are answered
in order (one forwarded at a time per connection, the next parsed ones wait with reading
paused). Request bodies (Content-Length or chunked) stream to the upstream as they arrive and
response chunks stream back as they arrive, with flow control both ways: a slow reader pauses
the transport that feeds it. The only work for the tee is appending bytes (up to the cap) and
reading clocks into an :class:`~capture.exchange.Exchange` (:mod:`capture.live.request`).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import cast

import httptools

from capture.live.context import Context
from capture.live.request import Request

__all__ = ["ClientConnection"]

_BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 24\r\nconnection: close\r\n\r\nInvalid HTTP request.\r\n\r\n"
)


class ClientConnection(asyncio.Protocol):
    """One client connection: parses requests and answers them in order."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] | None = None
        self.queue: deque[Request] = deque()
        self.parsing: Request | None = None
        self.write_paused = False
        self._reading_paused = False
        self._close_after = False

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.peer = (str(peer[0]), int(peer[1])) if peer else None
        self.ctx.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        ctx = self.ctx
        ctx.connections.discard(self)
        if ctx.stopping and not ctx.connections and ctx.drained is not None:
            ctx.drained.set()
        self.transport = None
        queue, self.queue = self.queue, deque()
        for request in queue:
            request.client_lost()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.queue:
            self.queue[0].client_writable(False)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.queue:
            self.queue[0].client_writable(True)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # CONNECT or an Upgrade request: answered (CONNECT: 400), then the connection ends.
            self._close_after = True
            if self.parsing is not None and not self.parsing.body_complete:
                self.parsing.body_end()
            self._pause_reading()
        except httptools.HttpParserError:
            self._close_after = True
            self._pause_reading()
            if not self.queue and self.transport is not None:
                self.transport.write(_BAD_REQUEST)
                self.transport.close()
                return
        if self.queue:
            self.queue[0].flush_upstream()

    # -- httptools callbacks
    def on_message_begin(self) -> None:
        self.parsing = Request(self, time.perf_counter())

    def on_url(self, url: bytes) -> None:
        assert self.parsing is not None
        self.parsing.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.parsing is not None
        self.parsing.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        request = self.parsing
        assert request is not None
        parser = self.parser
        request.head_complete(
            parser.get_method(), parser.get_http_version(), parser.should_keep_alive()
        )
        self.queue.append(request)
        if len(self.queue) == 1:
            request.activate()

    def on_body(self, body: bytes) -> None:
        if self.parsing is not None:
            self.parsing.body_part(body)

    def on_message_complete(self) -> None:
        request = self.parsing
        if request is not None:
            request.body_end()
        if len(self.queue) > 1:
            self._pause_reading()  # pipelined: parse no further until the earlier ones are done

    # -- used by requests
    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def pause_for_upload(self, pause: bool) -> None:
        """The upstream cannot take the request body as fast as it comes: stop reading."""
        if pause:
            self._pause_reading()
        elif not (len(self.queue) > 1 or self._close_after):
            self._resume_reading()

    def finished(self, request: Request, *, keep_alive: bool) -> None:
        """The response to ``request`` is complete; answer the next one or close."""
        if self.queue and self.queue[0] is request:
            self.queue.popleft()
        if self.transport is None:
            return
        if not keep_alive or (self._close_after and not self.queue) or self.ctx.stopping:
            self.queue.clear()
            self.transport.close()
            return
        if self.queue:
            self.queue[0].activate()
            self.queue[0].flush_upstream()
        if len(self.queue) <= 1 and not self._close_after:
            self._resume_reading()

    def close(self) -> None:
        """Close now (shutdown past its grace period)."""
        if self.transport is not None:
            self.transport.close()

    def close_if_idle(self) -> bool:
        """Close a connection that has nothing in flight; whether it did."""
        if self.queue or self.transport is None:
            return False
        self.transport.close()
        return True

    def _pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
