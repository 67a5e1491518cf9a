"""HTTP content codings undone for the record: gzip, deflate, br and zstd, bounded and streaming.

Capture stores bodies decoded (docs/security.md, "Capture"): redaction can only scrub plain
bytes, usage is read from plain JSON, and a replay sends a plain body. A
:class:`BodyDecoder` takes the ``Content-Encoding`` header's value (codings in the order they
were applied, e.g. ``gzip, br``) and undoes them in reverse, chunk by chunk, so a compressed
event stream keeps each chunk's arrival time. Output stops at ``limit`` bytes (a decompression
bomb costs at most that much memory); input cut short by the capture cap decodes as far as it
goes. Anything it cannot read raises :class:`Undecodable` with the reason, never anything else.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Iterable

import brotli

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

__all__ = ["CODINGS", "BodyDecoder", "Undecodable", "decode_body", "parse_codings"]

CODINGS = frozenset({"br", "deflate", "gzip", "identity", "x-gzip", "zstd"})
"""The content codings shadow can undo (``identity`` is none at all)."""


class Undecodable(Exception):
    """A body that cannot be decoded; the message is the reason, for the record."""


def parse_codings(header: str) -> list[str]:
    """The codings of a ``Content-Encoding`` value, in the order they were applied.

    ``identity`` is dropped; an unknown coding raises :class:`Undecodable`.
    """
    codings = [part.strip().lower() for part in header.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    unknown = [c for c in codings if c not in CODINGS]
    if unknown:
        raise Undecodable(f"unsupported content-encoding {', '.join(unknown)}")
    return codings


class _Stage:
    """One coding undone incrementally; ``feed`` returns at most ``room`` bytes."""

    name = ""

    def feed(self, data: bytes, room: int) -> bytes:
        raise NotImplementedError

    def done(self) -> bool:
        """True when the coded stream ended (so the body was complete)."""
        raise NotImplementedError


class _Zlib(_Stage):
    """gzip (members may follow each other) and deflate (zlib-wrapped, or raw as some send)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._wbits = 31 if name in ("gzip", "x-gzip") else 47  # 47: zlib or gzip header
        self._z = zlib.decompressobj(self._wbits)
        self._seen = bytearray()  # deflate input until the first output: to retry it as raw
        self._started = False

    def feed(self, data: bytes, room: int) -> bytes:
        out = b""
        while True:
            try:
                out += self._z.decompress(data, room + 1 - len(out))
            except zlib.error as exc:
                if self._wbits != 47 or self._started:
                    raise Undecodable(f"{self.name} body does not decode ({exc})") from None
                self._wbits, self._z = -15, zlib.decompressobj(-15)  # raw deflate: no header
                data = bytes(self._seen) + data
                continue
            if not self._started:
                self._started = bool(out) or self._z.eof
                if self._wbits == 47 and not self._started:
                    self._seen += data
            rest = self._z.unused_data
            if self._wbits != 31 or not self._z.eof or not rest.strip(b"\0") or len(out) > room:
                return out
            self._z, data = zlib.decompressobj(31), rest  # the next gzip member

    def done(self) -> bool:
        return self._z.eof


class _Brotli(_Stage):
    name = "br"

    def __init__(self) -> None:
        self._d = brotli.Decompressor()

    def feed(self, data: bytes, room: int) -> bytes:
        if self._d.is_finished():
            return b""
        try:
            return bytes(self._d.process(data, output_buffer_limit=room + 1))
        except brotli.error as exc:
            raise Undecodable(f"br body does not decode ({exc or 'invalid data'})") from None

    def done(self) -> bool:
        return bool(self._d.is_finished())


class _Zstd(_Stage):
    name = "zstd"

    def __init__(self) -> None:
        self._d = zstd.ZstdDecompressor()

    def feed(self, data: bytes, room: int) -> bytes:
        out = b""
        try:
            while data and len(out) <= room:
                if self._d.eof:  # another frame follows
                    self._d = zstd.ZstdDecompressor()
                out += self._d.decompress(data, room + 1 - len(out))
                data = self._d.unused_data if self._d.eof else b""
        except zstd.ZstdError as exc:
            raise Undecodable(f"zstd body does not decode ({exc})") from None
        return out

    def done(self) -> bool:
        return self._d.eof


def _stage(coding: str) -> _Stage:
    if coding == "br":
        return _Brotli()
    if coding == "zstd":
        return _Zstd()
    return _Zlib(coding)


class BodyDecoder:
    """Undoes a ``Content-Encoding`` chunk by chunk, keeping at most ``limit`` decoded bytes.

    Raises:
        Undecodable: (here or from :meth:`feed`/:meth:`finish`) an unknown coding, or bytes
            that are not what the header says.
    """

    def __init__(self, content_encoding: str, *, limit: int) -> None:
        self.codings = parse_codings(content_encoding)
        self._stages = [_stage(c) for c in reversed(self.codings)]
        self.limit = limit
        self.size = 0
        self.truncated = False
        """True when the decoded body was longer than ``limit`` (it is cut there)."""

    def feed(self, chunk: bytes) -> bytes:
        """The decoded bytes this chunk completes (empty once ``limit`` is reached)."""
        room = self.limit - self.size
        if self.truncated:
            return b""
        data = chunk
        for stage in self._stages:
            data = stage.feed(data, room)
            if len(data) > room:
                data = data[:room]
                self.truncated = True
        self.size += len(data)
        return data

    def finish(self, *, complete: bool) -> None:
        """End of input: a ``complete`` body whose coded stream did not end is undecodable."""
        if complete and not self.truncated and not all(s.done() for s in self._stages):
            stage = next(s for s in self._stages if not s.done())
            raise Undecodable(f"{stage.name} body ends before its compressed stream does")


def decode_body(
    data: bytes | Iterable[bytes], content_encoding: str, *, limit: int, complete: bool = True
) -> tuple[bytes, bool]:
    """The decoded body (at most ``limit`` bytes) and whether it was cut there.

    ``complete`` says the coded bytes are the whole body (not cut by a cap), so a stream that
    ends early is an error rather than a prefix.

    Raises:
        Undecodable: the reason the body cannot be decoded.
    """
    decoder = BodyDecoder(content_encoding, limit=limit)
    parts = [decoder.feed(chunk) for chunk in ([data] if isinstance(data, bytes) else data)]
    decoder.finish(complete=complete)
    return b"".join(parts), decoder.truncated
