"""shadow.replay.breaker: when the circuit breaker opens, skips, probes, closes and re-opens."""

from __future__ import annotations

import pytest

from shadow.config import SafetyConfig
from shadow.errors import ConfigError
from shadow.replay.breaker import BreakerState, CircuitBreaker


class FakeClock:
    """A monotonic clock that moves only when a test advances it."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    """A fresh fake clock."""
    return FakeClock()


def make(clock: FakeClock, **overrides: float) -> CircuitBreaker:
    """A breaker that opens at 50% errors over at least 10 requests, with a 5 s cooldown."""
    settings: dict[str, float] = {"error_rate": 0.5, "min_requests": 10, "cooldown_s": 5.0}
    settings.update(overrides)
    return CircuitBreaker(
        error_rate=settings["error_rate"],
        min_requests=int(settings["min_requests"]),
        cooldown_s=settings["cooldown_s"],
        window=int(settings.get("window", 100)),
        clock=clock,
    )


def state(breaker: CircuitBreaker) -> BreakerState:
    """The breaker's state, read afresh (a function call, so mypy does not narrow it)."""
    return breaker.state


def trip(breaker: CircuitBreaker) -> None:
    """Feed failures until the breaker opens."""
    while state(breaker) == "closed":
        assert breaker.allow()
        breaker.record(ok=False)


def test_opens_exactly_at_the_error_rate_threshold(clock: FakeClock) -> None:
    """At 50%: 5 failures in 11 stay closed, the 6th failure in 12 opens it."""
    breaker = make(clock)
    for ok in [True] * 6 + [False] * 5:
        breaker.record(ok)
    assert state(breaker) == "closed"  # 5 / 11 < 0.5
    breaker.record(False)
    assert state(breaker) == "open"  # 6 / 12 = 0.5
    assert breaker.opened == 1


def test_threshold_is_not_lost_to_float_rounding(clock: FakeClock) -> None:
    """3 failures in 10 reach an error rate of 0.3 (0.3 × 10 is 3.0000000000000004 in floats)."""
    breaker = make(clock, error_rate=0.3, min_requests=10)
    for ok in [True] * 7 + [False] * 3:
        breaker.record(ok)
    assert state(breaker) == "open"


def test_min_requests_holds_the_breaker_closed(clock: FakeClock) -> None:
    """Nine failures out of nine do not open a breaker that needs ten requests; the tenth does."""
    breaker = make(clock)
    for _ in range(9):
        breaker.record(False)
    assert state(breaker) == "closed"
    assert breaker.allow()
    breaker.record(False)
    assert state(breaker) == "open"


def test_window_forgets_old_failures(clock: FakeClock) -> None:
    """Failures that have rolled out of the window no longer count."""
    breaker = make(clock, min_requests=4, window=4)
    for ok in (False, True, True, True):
        breaker.record(ok)  # 1 / 4 < 0.5
    for ok in (True, True, True):
        breaker.record(ok)  # the failure has rolled out
    breaker.record(False)
    breaker.record(False)  # window: True, True, False, False = 2 / 4
    assert state(breaker) == "open"


def test_zero_error_rate_never_opens_without_a_failure(clock: FakeClock) -> None:
    """With error_rate 0 successes alone never open the breaker, one failure does."""
    breaker = make(clock, error_rate=0.0)
    for _ in range(50):
        breaker.record(True)
    assert state(breaker) == "closed"
    breaker.record(False)
    assert state(breaker) == "open"


def test_open_breaker_skips_and_counts(clock: FakeClock) -> None:
    """While open, allow() refuses every request and counts each refusal."""
    breaker = make(clock)
    trip(breaker)
    assert [breaker.allow() for _ in range(7)] == [False] * 7
    assert breaker.skipped == 7
    clock.advance(4.999)
    assert not breaker.allow()
    assert breaker.skipped == 8
    assert state(breaker) == "open"


def test_late_outcomes_while_open_are_ignored(clock: FakeClock) -> None:
    """Outcomes of requests sent before the breaker opened neither close it nor extend it."""
    breaker = make(clock)
    trip(breaker)
    breaker.record(True)
    breaker.record(False)
    assert state(breaker) == "open"
    assert breaker.opened == 1
    clock.advance(5.0)
    assert state(breaker) == "half_open"


def test_half_open_lets_exactly_one_probe_through(clock: FakeClock) -> None:
    """After the cooldown one probe goes; others are skipped while it is out."""
    breaker = make(clock)
    trip(breaker)
    clock.advance(5.0)
    assert state(breaker) == "half_open"
    assert breaker.allow()
    assert [breaker.allow() for _ in range(3)] == [False, False, False]
    assert breaker.skipped == 3
    assert state(breaker) == "half_open"


def test_probe_success_closes_and_empties_the_window(clock: FakeClock) -> None:
    """A successful probe closes the breaker with a fresh window: old failures are forgotten."""
    breaker = make(clock)
    trip(breaker)
    clock.advance(5.0)
    assert breaker.allow()
    breaker.record(True)
    assert state(breaker) == "closed"
    assert all(breaker.allow() for _ in range(5))
    for _ in range(9):  # nine failures: below min_requests of the fresh window
        breaker.record(False)
    assert state(breaker) == "closed"


def test_probe_failure_reopens_with_a_new_cooldown(clock: FakeClock) -> None:
    """A failed probe re-opens the breaker, counts an opening and restarts the cooldown."""
    breaker = make(clock)
    trip(breaker)
    clock.advance(6.0)
    assert breaker.allow()
    clock.advance(1.0)
    breaker.record(False)
    assert state(breaker) == "open"
    assert breaker.opened == 2
    clock.advance(4.9)
    assert not breaker.allow()
    clock.advance(0.1)
    assert state(breaker) == "half_open"
    assert breaker.allow()
    breaker.record(True)
    assert state(breaker) == "closed"
    assert breaker.opened == 2


def test_straggler_in_half_open_without_a_probe_is_ignored(clock: FakeClock) -> None:
    """An outcome arriving half open before any probe was sent settles nothing."""
    breaker = make(clock)
    trip(breaker)
    clock.advance(5.0)
    breaker.record(True)
    assert state(breaker) == "half_open"
    assert breaker.allow()


def test_from_config_uses_the_safety_section(clock: FakeClock) -> None:
    """from_config takes its thresholds from [safety] and widens the window for min_requests."""
    safety = SafetyConfig(breaker_error_rate=1.0, breaker_min_requests=150, breaker_cooldown_s=2)
    breaker = CircuitBreaker.from_config(safety, clock=clock)
    for _ in range(149):
        breaker.record(False)
    assert state(breaker) == "closed"
    breaker.record(False)
    assert state(breaker) == "open"
    clock.advance(2.0)
    assert state(breaker) == "half_open"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"error_rate": 1.5}, "breaker_error_rate has value 1.5; it must be between 0 and 1"),
        ({"min_requests": 0}, "breaker_min_requests has value 0; it must be between 1 and 100"),
        ({"min_requests": 101}, "breaker_min_requests has value 101; it must be between 1 and 100"),
        ({"cooldown_s": 0.0}, "breaker_cooldown_s has value 0.0; it must be > 0"),
    ],
)
def test_bad_settings_name_the_config_key(
    clock: FakeClock, kwargs: dict[str, float], message: str
) -> None:
    """A setting the breaker cannot work with is a config error naming the [safety] key."""
    with pytest.raises(ConfigError) as caught:
        make(clock, **kwargs)
    assert str(caught.value) == f"safety.{message}"
