"""shadow.closing: leaving a with block closes the object, even when the block raised."""

from __future__ import annotations

import threading

import pytest

from shadow.closing import AsyncClosing, Closing, Running


class _Resource(Closing):
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


class _AsyncResource(AsyncClosing):
    def __init__(self) -> None:
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1


def test_with_returns_the_object_and_closes_it_on_error() -> None:
    """``with`` yields the object itself and calls close once, letting the error through."""
    resource = _Resource()
    entered: list[_Resource] = []

    def use() -> None:
        with resource as inside:
            entered.append(inside)
            raise KeyError("boom")

    with pytest.raises(KeyError):
        use()
    assert entered == [resource]
    assert resource.closed == 1


async def test_async_with_returns_the_object_and_acloses_it() -> None:
    """``async with`` yields the object itself and awaits aclose once on the way out."""
    resource = _AsyncResource()
    async with resource as entered:
        assert entered is resource
        assert resource.closed == 0
    assert resource.closed == 1


def test_a_class_without_close_cannot_be_made() -> None:
    """Forgetting to define close is an error when the object is made, not when it is left."""

    class Forgetful(Closing):
        pass

    with pytest.raises(TypeError, match="close"):
        Forgetful()  # type: ignore[abstract]


class _Service(Running):
    def __init__(self) -> None:
        self.events: list[tuple[str, bool]] = []

    def _log(self, what: str) -> None:
        self.events.append((what, threading.current_thread() is threading.main_thread()))

    def start(self) -> None:
        self._log("start")

    def stop(self) -> None:
        self._log("stop")


def test_running_starts_on_entry_and_stops_on_exit_even_on_error() -> None:
    """``with`` starts the service, hands it over, and stops it when the block raises."""
    service = _Service()
    seen: list[object] = []

    def use() -> None:
        with service as entered:
            seen.extend([entered, list(service.events)])
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        use()
    assert seen == [service, [("start", True)]]
    assert service.events == [("start", True), ("stop", True)]


async def test_async_running_starts_and_stops_off_the_event_loop() -> None:
    """``async with`` runs start and stop in a worker thread, so the loop keeps serving."""
    service = _Service()
    async with service as entered:
        assert entered is service
    assert service.events == [("start", False), ("stop", False)]
    await service.aclose()
    assert service.events[-1] == ("stop", False)
