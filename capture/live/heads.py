"""Message heads on the live path: what is dropped, what the sidecar sets, and the error bodies.

Hop-by-hop headers (RFC 9110 §7.6.1) never cross the sidecar, nor what a client claims about
earlier hops (``Forwarded``, every ``X-Forwarded-*``, ``X-Real-IP``): the sidecar is the first
hop it trusts and sets its own (:func:`forwarding_headers`).
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

import msgspec

__all__ = [
    "DROP_REQUEST",
    "DROP_RESPONSE",
    "JSON",
    "error_body",
    "forwarding_headers",
    "reason",
    "simple_response",
]

DROP_REQUEST = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
        b"trailer", b"trailers", b"transfer-encoding", b"upgrade", b"host", b"content-length",
        b"expect", b"proxy-connection", b"forwarded", b"x-real-ip",
    }
)  # fmt: skip
"""Request headers (lowercase) not passed on; every ``x-forwarded-*`` is dropped as well."""
DROP_RESPONSE = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
        b"trailer", b"trailers", b"transfer-encoding", b"upgrade", b"proxy-connection",
    }
)  # fmt: skip
"""Response headers (lowercase) not passed on to the client."""
JSON = (b"content-type", b"application/json")
_AUTHORITY = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?"
)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


def reason(status: int) -> bytes:
    """The standard reason phrase of ``status`` (empty when there is none)."""
    return _REASONS.get(status, b"")


def error_body(kind: str, message: str) -> bytes:
    """The JSON body of a response the sidecar gives itself (OpenAI's error shape)."""
    return msgspec.json.encode({"error": {"message": message, "type": kind, "code": kind}})


def simple_response(
    status: int, body: bytes, headers: list[tuple[bytes, bytes]], *, close: bool
) -> bytes:
    """A complete HTTP/1.1 response with a Content-Length body."""
    lines = [b"HTTP/1.1 %d %s" % (status, reason(status))]
    lines.extend(name + b": " + value for name, value in headers)
    lines.append(b"content-length: %d" % len(body))
    if close:
        lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def forwarding_headers(
    client: tuple[str, int] | list[Any] | None, scheme: str, host: str
) -> list[tuple[str, str]]:
    """The sidecar's own ``X-Forwarded-For/Proto/Host`` and ``Forwarded`` (RFC 7239) headers.

    ``client`` is the peer's address, ``scheme`` how it reached the sidecar, and ``host`` the
    Host it asked for (left out unless it is a well-formed host[:port]).
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
