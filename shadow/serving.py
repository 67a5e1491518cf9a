"""Serving ASGI apps with uvicorn: socket binding and clean signal handling.

Used by ``shadow mock-llm`` and the test and benchmark servers; the capture sidecar has its own
server (``capture/live/``) and uses :func:`bind_socket` only. Sockets are bound here, before
uvicorn starts, so ``port=0`` works and the port accepts connections as soon as it is printed.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import socket
import threading
import time
from collections.abc import Generator
from types import FrameType
from typing import Any

import uvicorn

from shadow.closing import Running
from shadow.errors import UsageError

__all__ = ["BackgroundServer", "Server", "bind_socket", "make_config"]

_START_TIMEOUT_S = 15.0


def bind_socket(host: str, port: int, *, backlog: int = 4096) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0 picks a free port).

    Raises:
        UsageError: the port is taken or the address cannot be used, with the fix.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(
                f"port {port} on {host} is already in use; choose another port (0 picks a free one)"
            ) from None
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


class Server(uvicorn.Server):
    """uvicorn's server, stopping on SIGINT/SIGTERM with exit status 0.

    uvicorn re-raises the captured signal after a graceful shutdown, which makes the process
    die by that signal; a shadow process that stopped cleanly exits 0 instead.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handle(signum: int, frame: FrameType | None) -> None:
            self.handle_exit(signum, frame)

        previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def make_config(app: object, *, lifespan: str = "off", **options: Any) -> uvicorn.Config:
    """uvicorn settings shared by shadow's servers: uvloop, httptools, no access log."""
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        loop="uvloop",
        http="httptools",
        lifespan=lifespan,  # type: ignore[arg-type]
        access_log=False,
        log_level="warning",
        backlog=4096,
        **options,
    )


class BackgroundServer(Running):
    """Serve an ASGI app on a background thread with its own event loop.

    For tests, demos and benchmarks: ``with BackgroundServer(app) as server: server.url``.
    ``port=0`` picks a free port; the socket is listening before :meth:`start` returns and the
    app's lifespan startup (if ``lifespan="on"``) has completed.
    """

    def __init__(
        self,
        app: object,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        lifespan: str = "off",
        **options: Any,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._config = make_config(app, lifespan=lifespan, **options)
        self._scheme = "https" if options.get("ssl_certfile") else "http"
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8001``."""
        return f"{self._scheme}://{self.host}:{self.port}"

    def bind(self) -> socket.socket:
        """Bind and listen now, so :attr:`url` is final before serving starts."""
        if self._sock is None:
            self._sock = bind_socket(self.host, self.port)
            self.port = self._sock.getsockname()[1]
        return self._sock

    def run(self) -> None:
        """Serve in the foreground until SIGINT or SIGTERM (exit status 0)."""
        sock = self.bind()
        self._server = Server(self._config)
        try:
            self._server.run(sockets=[sock])
        finally:
            self._close_socket()

    def start(self) -> None:
        """Serve on a background thread; returns once the server accepts requests."""
        if self._thread is not None:
            raise RuntimeError("the server is already started")
        sock = self.bind()
        server = self._server = Server(self._config)

        def serve() -> None:
            import uvloop

            uvloop.run(server.serve(sockets=[sock]))

        self._thread = threading.Thread(target=serve, name=f"server:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        tick = threading.Event()  # never set: a timed wait that is not a bare sleep
        while not server.started:
            if not self._thread.is_alive():
                self.stop()
                raise RuntimeError("the server thread exited at start")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server did not start within {_START_TIMEOUT_S} s")
            tick.wait(0.005)

    def stop(self) -> None:
        """Stop a background server (running lifespan shutdown); safe to call twice."""
        server, thread = self._server, self._thread
        self._thread = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(60)
        self._close_socket()

    def _close_socket(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
