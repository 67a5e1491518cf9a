"""A minimal ASGI forwarding proxy, to compare upstream clients under the same server.

No tee, no metrics: only what the client library costs. ``--client`` is ``aiohttp``,
``httpx`` (default httpcore transport) or ``httpx-aiohttp`` (httpx with aiohttp underneath).

    python bench/_minimal_proxy.py --client aiohttp --upstream http://127.0.0.1:9000
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn

from shadow.serving import Server, bind_socket


def build(client: str, upstream: str) -> Any:
    state: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    state["client"] = _open(client)
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await _close(state["client"])
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        url = upstream + scope["path"]
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"] if k != b"host"]
        session = state["client"]
        if client == "aiohttp":
            async with session.request(scope["method"], url, data=body, headers=headers) as r:
                content = await r.read()
                status, out = r.status, [(k.lower(), v) for k, v in r.raw_headers]
        else:
            r = await session.request(scope["method"], url, content=body, headers=headers)
            content, status = r.content, r.status_code
            out = [(k.lower(), v) for k, v in r.headers.raw]
        out = [(k, v) for k, v in out if k not in (b"connection", b"transfer-encoding")]
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": content})

    return app


def _open(client: str) -> Any:
    if client == "aiohttp":
        import aiohttp

        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)
    import httpx

    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    if client == "httpx-aiohttp":
        from httpx_aiohttp import AiohttpTransport

        return httpx.AsyncClient(transport=AiohttpTransport(), limits=limits)
    return httpx.AsyncClient(limits=limits)


async def _close(session: Any) -> None:
    if hasattr(session, "aclose"):
        await session.aclose()
    else:
        await session.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--client", choices=["aiohttp", "httpx", "httpx-aiohttp"], required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    sock = bind_socket("127.0.0.1", 0)
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(
        build(args.client, args.upstream),
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
    )
    Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
