"""The plain-ASGI plumbing of ``shadow mock-llm``: reading a body, answering, streaming, hanging.

Plain ASGI rather than a framework: the server must never be the bottleneck of a benchmark
(>= 2,000 requests/s on one core at time-scale 0).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = [
    "JSON",
    "SSE",
    "Headers",
    "Receive",
    "Scope",
    "Send",
    "hang",
    "header",
    "lifespan",
    "read_body",
    "respond",
    "send_body",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON: Headers = [(b"content-type", b"application/json")]
SSE: Headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


def header(scope: Scope, name: bytes) -> str | None:
    """The value of the request header ``name`` (lower case), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def read_body(receive: Receive) -> bytes:
    """The whole request body."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def respond(send: Send, status: int, body: bytes, headers: Headers = JSON) -> None:
    """Answer with one body."""
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_body(send: Send, data: bytes, *, more: bool = True) -> None:
    """Send part of a streamed body (an empty part is not sent unless it ends the body)."""
    if data or not more:
        await send({"type": "http.response.body", "body": data, "more_body": more})


async def hang(receive: Receive) -> None:
    """Never answer: wait until the client gives up (disconnects) or the server stops."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def lifespan(receive: Receive, send: Send) -> None:
    """Answer the ASGI lifespan protocol."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
