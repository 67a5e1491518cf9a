"""Serving ASGI apps with uvicorn: socket binding and clean signal handling.

Shared by ``shadow mock-llm`` and the capture sidecar. Sockets are bound here, before uvicorn
starts, so ``port=0`` works and the port accepts connections as soon as it is printed.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import socket
import threading
from collections.abc import Generator
from types import FrameType

import uvicorn

from shadow.errors import UsageError

__all__ = ["Server", "bind_socket"]


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
                f"port {port} on {host} is already in use; pass another --port (0 picks a free one)"
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
