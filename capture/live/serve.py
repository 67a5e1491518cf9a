"""Serving the sidecar on the live path: listener, start, graceful stop, signals.

:class:`LiveServer` binds its socket first (so ``port=0`` works and the port accepts
connections as soon as it is known), starts the sidecar's tee, then serves until told to stop:
in the foreground until SIGINT/SIGTERM (:meth:`LiveServer.run`, exit status 0) or on a
background thread with its own uvloop event loop (:meth:`LiveServer.start`, for tests,
benchmarks and embedding). Stopping closes the listener and idle connections, lets in-flight
requests finish within ``capture.shutdown_grace_s``, closes what is left, then drains the tee.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl
import threading

from capture.live.server import ClientConnection
from capture.sidecar import Sidecar
from capture.tee import DrainReport
from shadow.closing import Running
from shadow.serving import bind_socket

__all__ = ["LiveServer"]

log = logging.getLogger("shadow.capture")

_START_TIMEOUT_S = 15.0


class LiveServer(Running):
    """The sidecar on its own HTTP/1.1 server (asyncio Protocols, httptools, uvloop)."""

    def __init__(
        self,
        sidecar: Sidecar,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        self.sidecar = sidecar
        self.host = host
        self.port = port
        self._sock = sock
        if sock is not None:
            self.port = sock.getsockname()[1]
        self._ssl: ssl.SSLContext | None = None
        if ssl_certfile:
            self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._ssl.load_cert_chain(ssl_certfile, ssl_keyfile)
        self.scheme = "https" if self._ssl else "http"
        self.report: DrainReport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._failed: BaseException | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8080``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def bind(self) -> socket.socket:
        """Bind and listen now, so :attr:`url` is final before serving starts."""
        if self._sock is None:
            self._sock = bind_socket(self.host, self.port)
            self.port = self._sock.getsockname()[1]
        return self._sock

    async def serve(self) -> DrainReport:
        """Serve until :meth:`request_stop`; returns the tee's drain report."""
        sock = self.bind()
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        sidecar = self.sidecar
        try:
            await sidecar.start()
            ctx = sidecar.context(self.scheme)
            server = await self._loop.create_server(
                lambda: ClientConnection(ctx), sock=sock, ssl=self._ssl, backlog=4096
            )
        except BaseException as exc:
            self._failed = exc
            self._started.set()
            await sidecar.aclose()
            raise
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            ctx.stopping = True
            ctx.drained = asyncio.Event()
            for conn in list(ctx.connections):
                conn.close_if_idle()
            if ctx.connections:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ctx.drained.wait(), sidecar.config.shutdown_grace_s)
            for conn in list(ctx.connections):
                conn.close()
            self.report = await sidecar.aclose()
            log.info("capture stopped: %s", self.report)
        return self.report

    def request_stop(self) -> None:
        """Ask a serving server to stop (from any thread)."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)

    def run(self) -> None:
        """Serve in the foreground until SIGINT or SIGTERM (exit status 0)."""
        import uvloop

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.request_stop)
            await self.serve()

        try:
            uvloop.run(main())
        finally:
            self._close_socket()

    def start(self) -> None:
        """Serve on a background thread; returns once requests are accepted."""
        if self._thread is not None:
            raise RuntimeError("the server is already started")
        self.bind()

        def serve() -> None:
            import uvloop

            with contextlib.suppress(BaseException):
                uvloop.run(self.serve())

        self._thread = threading.Thread(target=serve, name=f"capture:{self.port}", daemon=True)
        self._thread.start()
        if not self._started.wait(_START_TIMEOUT_S):
            self.stop()
            raise RuntimeError(f"the sidecar did not start within {_START_TIMEOUT_S} s")
        if self._failed is not None:
            failed = self._failed
            self.stop()
            raise RuntimeError(f"the sidecar failed to start: {failed}") from failed

    def stop(self) -> None:
        """Stop a background server (draining the tee); safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self.request_stop()
            thread.join(60)
        self._close_socket()

    def _close_socket(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
