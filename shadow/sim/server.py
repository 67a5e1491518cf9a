"""Serve :class:`~shadow.sim.app.MockLLM` with uvicorn (uvloop + httptools).

:class:`MockLLMServer` runs either in the foreground (:meth:`~shadow.serving.BackgroundServer.run`,
for the CLI: SIGINT/SIGTERM stop it with exit status 0) or on a background thread with its own
event loop (``with MockLLMServer(...) as server:``, for tests, demos and benchmarks).
"""

from __future__ import annotations

from shadow.serving import BackgroundServer
from shadow.sim.app import FaultConfig, MockLLM

__all__ = ["MockLLMServer"]


class MockLLMServer(BackgroundServer):
    """One simulated model server on ``host:port`` (``port=0`` picks a free one)."""

    app: MockLLM

    def __init__(
        self,
        profile: str = "large",
        *,
        seed: int = 0,
        time_scale: float = 1.0,
        faults: FaultConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        slots: int | None = None,
    ) -> None:
        app = MockLLM(profile, seed=seed, time_scale=time_scale, faults=faults, slots=slots)
        super().__init__(
            app, host=host, port=port, timeout_graceful_shutdown=1, timeout_keep_alive=30
        )
