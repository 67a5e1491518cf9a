"""A minimal ASGI forwarding proxy, to compare upstream clients under the same server.

No tee, no metrics: only what the client library and the server cost. ``--client`` is
``aiohttp``, ``httpx`` (default httpcore transport) or ``httpx-aiohttp`` (httpx with aiohttp
underneath). ``--server`` is ``uvicorn`` (httptools, uvloop: what the sidecar uses),
``granian`` (Rust HTTP server, ASGI, one worker, uvloop) or ``aiohttp-web`` (aiohttp's own
server, no ASGI), so the server choice is measured with the same client.

    python bench/_minimal_proxy.py --client aiohttp --upstream http://127.0.0.1:9000
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
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


def from_env() -> Any:
    """The app for granian (``--factory``): client and upstream from the environment."""
    return build(os.environ["MINIMAL_PROXY_CLIENT"], os.environ["MINIMAL_PROXY_UPSTREAM"])


def _serve_aiohttp_web(upstream: str, sock: Any) -> None:
    import aiohttp
    from aiohttp import web

    async def forward(request: web.Request) -> web.Response:
        session: aiohttp.ClientSession = request.app["session"]
        body = await request.read()
        headers = [(k, v) for k, v in request.headers.items() if k.lower() != "host"]
        url = upstream + request.path
        async with session.request(request.method, url, data=body, headers=headers) as r:
            content = await r.read()
            out = [(k, v) for k, v in r.headers.items()
                   if k.lower() not in ("connection", "transfer-encoding", "content-length")]  # fmt: skip
            return web.Response(status=r.status, body=content, headers=out)

    async def opened(app: web.Application) -> Any:
        app["session"] = _open("aiohttp")
        yield
        await app["session"].close()

    app = web.Application()
    app.cleanup_ctx.append(opened)
    app.router.add_route("*", "/{tail:.*}", forward)
    import uvloop

    uvloop.install()
    web.run_app(app, sock=sock, access_log=None, print=None)


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
    parser.add_argument(
        "--server", choices=["uvicorn", "granian", "aiohttp-web"], default="uvicorn"
    )
    args = parser.parse_args()
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    if args.server == "granian":
        sock.close()  # granian binds the port itself
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    if args.server == "aiohttp-web":
        _serve_aiohttp_web(args.upstream, sock)
        return
    if args.server == "granian":
        env = {**os.environ, "MINIMAL_PROXY_CLIENT": args.client,
               "MINIMAL_PROXY_UPSTREAM": args.upstream}  # fmt: skip
        granian = str(Path(sys.executable).with_name("granian"))
        os.execve(granian, [granian, "--interface", "asgi", "--host", "127.0.0.1", "--port",
                            str(port), "--workers", "1", "--loop", "uvloop", "--no-ws",
                            "--log-level", "warning", "--no-access-log", "--factory",
                            "--working-dir", str(Path(__file__).parent),
                            "_minimal_proxy:from_env"], env)  # fmt: skip
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
