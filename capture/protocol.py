"""The sidecar's HTTP protocol: uvicorn's httptools one, noting when each request began.

The parser's first callback for a request (its first byte, as read from the socket) stamps
``time.perf_counter()`` into the ASGI scope under :data:`RECEIVED_AT`, so the sidecar's
added-latency figure covers parsing the request line and headers too, not only the app's part.
"""

from __future__ import annotations

import time

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["RECEIVED_AT", "StampingProtocol"]

RECEIVED_AT = "shadow.received_at"
"""Scope key: ``time.perf_counter()`` when the request's first byte was parsed."""


class StampingProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, stamping each request's arrival into its scope."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope[RECEIVED_AT] = time.perf_counter()  # type: ignore[literal-required]
