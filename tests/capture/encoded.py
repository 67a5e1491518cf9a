"""An upstream that speaks HTTP content codings as real servers do, for encoded-body tests.

:class:`CodingServer` wraps an ASGI app (mock-llm): a request whose ``Content-Encoding`` it
cannot undo gets a 500, as a real model server's decoding middleware answers; a request with
``x-test-respond-encoding: CODING`` gets its response compressed that way (an event stream
chunk by chunk, flushed, so chunks still arrive one by one). Its codecs are the libraries'
one-shot calls, independent of :mod:`shadow.wire.encoding`, which the tests check.
"""

from __future__ import annotations

import gzip
import sys
import zlib
from collections.abc import Callable
from typing import Any

import brotli
import msgspec

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

__all__ = ["CODINGS", "CodingServer", "compress", "decompress"]

CODINGS = ("gzip", "deflate", "br", "zstd")


def compress(data: bytes, coding: str) -> bytes:
    """``data`` in one content coding."""
    if coding == "gzip":
        return gzip.compress(data)
    if coding == "deflate":
        return zlib.compress(data)
    if coding == "br":
        return bytes(brotli.compress(data))
    assert coding == "zstd", coding
    return zstd.compress(data)


def decompress(data: bytes, coding: str) -> bytes:
    """Undo one content coding, raising on bytes that are not in it."""
    if coding == "gzip":
        return gzip.decompress(data)
    if coding == "deflate":
        return zlib.decompress(data)
    if coding == "br":
        return bytes(brotli.decompress(data))
    assert coding == "zstd", coding
    return zstd.decompress(data)


class _Streaming:
    """Compresses a response message by message, flushing each so it can be sent at once."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        if coding in ("gzip", "deflate"):
            self._z = zlib.compressobj(wbits=31 if coding == "gzip" else 15)
        elif coding == "br":
            self._b = brotli.Compressor()
        else:
            self._s = zstd.ZstdCompressor()

    def chunk(self, data: bytes, last: bool) -> bytes:
        if self.coding in ("gzip", "deflate"):
            out = self._z.compress(data)
            return out + self._z.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)
        if self.coding == "br":
            out = bytes(self._b.process(data))
            return out + bytes(self._b.finish() if last else self._b.flush())
        if last:
            return self._s.compress(data, zstd.ZstdCompressor.FLUSH_FRAME)
        return self._s.compress(data, zstd.ZstdCompressor.FLUSH_BLOCK)


Asgi = Callable[..., Any]


class CodingServer:
    """ASGI wrapper: decodes coded request bodies (500 if it cannot), codes responses on ask."""

    def __init__(self, app: Asgi) -> None:
        self.app = app
        self.failures = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        coding = headers.get(b"content-encoding", b"").decode()
        respond = headers.get(b"x-test-respond-encoding", b"").decode()
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        if coding:
            try:
                body = bytearray(decompress(bytes(body), coding))
            except Exception as exc:  # what a server's decoding middleware does: a 500
                self.failures += 1
                error = {"error": {"message": f"cannot decode the body: {exc}", "type": "server"}}
                await send(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": msgspec.json.encode(error)})
                return
        inner = {
            **scope,
            "headers": [
                (k, v)
                for k, v in scope["headers"]
                if k not in (b"content-encoding", b"content-length")
            ]
            + [(b"content-length", str(len(body)).encode())],
        }
        sent = False

        async def replay_body() -> Any:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        if not respond:
            await self.app(inner, replay_body, send)
            return
        coder = _Streaming(respond)

        async def coded_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                out = [(k, v) for k, v in message.get("headers", []) if k != b"content-length"]
                out.append((b"content-encoding", respond.encode()))
                message = {**message, "headers": out}
            elif message["type"] == "http.response.body":
                more = message.get("more_body", False)
                message = {**message, "body": coder.chunk(message.get("body", b""), not more)}
            await send(message)

        await self.app(inner, replay_body, coded_send)
