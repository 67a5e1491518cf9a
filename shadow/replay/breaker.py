"""A circuit breaker per arm: stop sending to a target that is mostly failing, then probe it.

States (``CircuitBreaker.state``)::

    closed ──(window has >= min_requests outcomes and error share >= error_rate)──▶ open
    open ──(cooldown_s elapsed)──▶ half_open ──(probe succeeds)──▶ closed (window emptied)
                                      └──────(probe fails)──▶ open (a new cooldown)

While closed every request is allowed and its outcome goes into a rolling window of the last
``window`` outcomes. While open, :meth:`~CircuitBreaker.allow` says no and counts the request
as skipped (the replayer records it as skipped, never sends it). Half open lets exactly one
request through at a time, the probe; its outcome decides.

Outcomes that arrive while open (requests sent before the breaker opened) are ignored, and so
are outcomes that arrive while half open with no probe out. While a probe is out the next
outcome is taken as the probe's: :meth:`~CircuitBreaker.record` carries no request identity,
so a slow request sent before the breaker opened that completes during the probe can settle
it in the probe's place.

Callers must :meth:`~CircuitBreaker.record` every request :meth:`~CircuitBreaker.allow` let
through (``try``/``finally``), or a probe that never reports keeps the breaker half open.

The breaker is plain state on one event loop: no locks, no awaits.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from shadow.config import SafetyConfig
from shadow.errors import ConfigError

__all__ = ["BreakerState", "CircuitBreaker"]

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Opens when too many recent requests failed; after a cooldown, probes one at a time.

    Args:
        error_rate: the breaker opens when failures make up at least this share of the window
            (``safety.breaker_error_rate``), between 0 and 1. A window without a failure never
            opens it, so 0 means "open on any failure once min_requests have been seen".
        min_requests: outcomes the window must hold before the breaker may open
            (``safety.breaker_min_requests``), between 1 and ``window``.
        cooldown_s: seconds the breaker stays open before it lets a probe through
            (``safety.breaker_cooldown_s``), > 0.
        window: how many of the most recent outcomes are weighed, > 0 (not a config key:
            :meth:`from_config` keeps the default unless min_requests needs more).
        clock: monotonic seconds; injected by tests.
    """

    __slots__ = (
        "_clock",
        "_cooldown_s",
        "_error_rate",
        "_failures",
        "_min_requests",
        "_opened",
        "_opened_at",
        "_outcomes",
        "_probe_out",
        "_skipped",
        "_state",
    )

    def __init__(
        self,
        *,
        error_rate: float,
        min_requests: int,
        cooldown_s: float,
        window: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.0 <= error_rate <= 1.0:
            raise _invalid("breaker_error_rate", error_rate, "it must be between 0 and 1")
        if window < 1:
            raise ValueError(f"window has value {window!r}; it must be > 0")
        if not 1 <= min_requests <= window:
            raise _invalid(
                "breaker_min_requests", min_requests, f"it must be between 1 and {window}"
            )
        if not (math.isfinite(cooldown_s) and cooldown_s > 0):
            raise _invalid("breaker_cooldown_s", cooldown_s, "it must be > 0")
        self._error_rate = float(error_rate)
        self._min_requests = min_requests
        self._cooldown_s = float(cooldown_s)
        self._clock = clock
        self._outcomes: deque[bool] = deque(maxlen=window)
        self._failures = 0
        self._state: BreakerState = "closed"
        self._opened_at = 0.0
        self._probe_out = False
        self._opened = 0
        self._skipped = 0

    @classmethod
    def from_config(
        cls,
        safety: SafetyConfig,
        *,
        window: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> CircuitBreaker:
        """A breaker with the ``[safety]`` section's thresholds.

        The window grows to ``breaker_min_requests`` when that is larger, so the breaker can open.
        """
        return cls(
            error_rate=safety.breaker_error_rate,
            min_requests=safety.breaker_min_requests,
            cooldown_s=safety.breaker_cooldown_s,
            window=max(window, safety.breaker_min_requests),
            clock=clock,
        )

    @property
    def state(self) -> BreakerState:
        """``closed``, ``open``, or ``half_open`` (the cooldown is over: a probe may go)."""
        self._advance()
        return self._state

    @property
    def opened(self) -> int:
        """How many times the breaker has opened, re-openings after a failed probe included."""
        return self._opened

    @property
    def skipped(self) -> int:
        """How many requests :meth:`allow` turned away."""
        return self._skipped

    def allow(self) -> bool:
        """Whether to send the next request; a refusal is counted in :attr:`skipped`."""
        self._advance()
        if self._state == "closed":
            return True
        if self._state == "half_open" and not self._probe_out:
            self._probe_out = True
            return True
        self._skipped += 1
        return False

    def record(self, ok: bool) -> None:
        """Record the outcome of a request that :meth:`allow` let through."""
        self._advance()
        if self._state == "closed":
            if len(self._outcomes) == self._outcomes.maxlen and not self._outcomes[0]:
                self._failures -= 1  # the oldest outcome, a failure, is about to fall out
            self._outcomes.append(ok)
            self._failures += not ok
            if self._should_open():
                self._open()
        elif self._state == "half_open" and self._probe_out:
            self._probe_out = False
            if ok:
                self._state = "closed"
                self._outcomes.clear()
                self._failures = 0
            else:
                self._open()
        # open, or half open with no probe out: a straggler from before the breaker opened.

    def _should_open(self) -> bool:
        seen = len(self._outcomes)
        return (
            seen >= self._min_requests
            and self._failures > 0
            # A quotient, not failures >= rate * seen: 3 / 10 >= 0.3 holds, 3 >= 0.3 * 10 does not.
            and self._failures / seen >= self._error_rate
        )

    def _open(self) -> None:
        self._state = "open"
        self._opened_at = self._clock()
        self._opened += 1

    def _advance(self) -> None:
        if self._state == "open" and self._clock() - self._opened_at >= self._cooldown_s:
            self._state = "half_open"
            self._probe_out = False

    def __repr__(self) -> str:
        return (
            f"<CircuitBreaker {self.state} failures={self._failures}/{len(self._outcomes)} "
            f"opened={self._opened} skipped={self._skipped}>"
        )


def _invalid(key: str, value: object, fix: str) -> ConfigError:
    return ConfigError(f"safety.{key} has value {value!r}; {fix}")
