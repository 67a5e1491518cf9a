"""When each request is sent: recorded and synthetic schedules, and an absolute-deadline pacer.

A *schedule* is a float64 array of offsets in seconds from the replay's start, one per request,
non-decreasing for sorted input. Replay is open loop (docs/architecture.md, "Pacing"): request
*i* is due at ``start + offset_i`` whatever happened to earlier requests, and its lag
(``sent_at − scheduled_at``) is measured, not hidden.

- :func:`recorded_schedule` replays captured traffic at its recorded rate × ``speed``.
- :func:`synthetic_schedule` makes constant, Poisson or gamma (bursty) arrivals at a given rate,
  optionally ramping the rate linearly.
- :class:`Pacer` sleeps until each offset against absolute deadlines on the event loop's clock,
  so a long replay never accumulates sleep drift.
- :func:`start_at_epoch` turns a wall-clock ``--start-at`` into loop time, so several replayer
  processes that were given the same ``--start-at`` share one time origin without talking.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from shadow.errors import UsageError

__all__ = [
    "Arrival",
    "Pacer",
    "recorded_schedule",
    "start_at_epoch",
    "synthetic_schedule",
]

Arrival = Literal["constant", "poisson", "gamma"]
_ARRIVALS: tuple[Arrival, ...] = ("constant", "poisson", "gamma")

_NS_PER_S = 1_000_000_000
_SPIN_S = 0.0011
"""How long before a deadline a precise :class:`Pacer` stops sleeping and starts yielding.

A little over a millisecond because the selector rounds the loop's timeouts up to whole
milliseconds (epoll, and uvloop's timers): with a 0.5 ms window, back-to-back waits 2 ms apart
measured a median lag of 0.28 ms on the standard loop, with 1.1 ms about 2 µs."""

_SLACK_MARGIN = 0.005
"""How early, as a fraction of the wait, a long sleep wakes to sleep the rest again.

Linux lets a sleep of *t* (epoll's timeout, so every loop's timers) end up to *t* / 1000 late,
*t* / 500 for a niced process (``select_estimate_accuracy``: timer slack that grows with the
timeout, up to 100 ms). Measured here: one 4 s sleep woke 3.2 ms late (19 ms niced), so a
recorded gap of a few seconds, or a ``--start-at`` seconds away, made the next send late by
milliseconds. Waking 0.5 % early and sleeping the remainder again shrinks each overshoot
with the wait until it fits in the spin window."""

_SHORT_WAIT_S = 0.2
"""A sleep this short (slack at most 0.4 ms) is taken in one piece."""


def _shown(value: object) -> str:
    """A flag's value as a person typed it: ``0`` rather than ``0.0``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, str) else str(value)


def _bad(setting: str, value: object, fix: str) -> UsageError:
    return _bad_text(setting, _shown(value), fix)


def _bad_text(setting: str, shown: str, fix: str) -> UsageError:
    return UsageError(f"{setting} has value {shown}; {fix}", setting=setting)


def _require_positive(setting: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(setting, value, "it must be a number > 0")
    if not (math.isfinite(value) and value > 0):
        raise _bad(setting, value, "it must be > 0")


def recorded_schedule(
    captured_at_ns: Sequence[int] | npt.NDArray[np.integer],
    *,
    speed: float,
    origin_ns: int | None = None,
) -> npt.NDArray[np.float64]:
    """Offsets in seconds that replay recorded arrivals at ``speed`` × their recorded rate.

    ``offset_i = (t_i − t_0) / speed``. The difference is taken in exact integer nanoseconds
    before anything becomes a float, so a gap between two epoch-nanosecond timestamps survives
    intact (a float64 epoch in nanoseconds is only good to about 256 ns).

    Args:
        captured_at_ns: each trace's ``captured_at`` (UTC epoch nanoseconds), in replay order.
        speed: the replay rate as a multiple of the recorded one (``--speed``), > 0.
        origin_ns: ``t_0``; by default the earliest timestamp, so for sorted input the first
            offset is 0. Replayers that split one recording between them must pass the same
            origin (e.g. the recording's first ``captured_at``), or each would start its own
            share at offset 0. A timestamp before the origin gets a negative offset: it is
            due immediately.
    """
    _require_positive("speed", speed)
    stamps = np.asarray(captured_at_ns)
    if stamps.size == 0:
        return np.zeros(0, dtype=np.float64)
    if stamps.ndim != 1 or stamps.dtype.kind not in "iu":
        raise UsageError(
            "captured_at must be a flat sequence of integer epoch nanoseconds, "
            f"got an array of {stamps.dtype} with shape {stamps.shape}"
        )
    if stamps.dtype.kind == "u" and int(stamps.max()) > np.iinfo(np.int64).max:
        raise UsageError(f"captured_at has value {int(stamps.max())}; it does not fit in int64")
    stamps = stamps.astype(np.int64, copy=False)
    origin = int(stamps.min()) if origin_ns is None else int(origin_ns)
    # int64 nanoseconds: exact for any two epoch times within ±292 years of each other.
    deltas_ns = stamps - np.int64(origin)
    # Exact in float64 for gaps up to 2**53 ns (104 days); beyond, still to well under 1 µs.
    return deltas_ns.astype(np.float64) / (_NS_PER_S * float(speed))


def synthetic_schedule(
    n: int,
    *,
    rate: float,
    arrival: Arrival,
    burstiness: float = 1.0,
    seed: int = 0,
    ramp: tuple[float, float, float] | None = None,
) -> npt.NDArray[np.float64]:
    """Offsets in seconds of ``n`` synthetic arrivals at ``rate`` requests per second.

    The first request is at offset 0; the gaps between requests are:

    - ``constant``: exactly ``1 / rate`` (offset ``i / rate``).
    - ``poisson``: exponential with mean ``1 / rate`` (a Poisson process).
    - ``gamma``: gamma with shape ``1 / burstiness`` and mean ``1 / rate``, so the gaps'
      coefficient of variation is ``sqrt(burstiness)``: 1 is a Poisson process (and gives the
      very same schedule as ``poisson`` for the same seed), above 1 is burstier, below 1
      smoother. Note that vLLM's ``benchmark_serving --burstiness`` is the other way round:
      there the factor *is* the gamma shape (below 1 burstier); its ``b`` is this ``1 / b``.

    ``ramp=(start_rate, end_rate, seconds)`` replaces ``rate`` with a rate that rises (or falls)
    linearly from ``start_rate`` to ``end_rate`` over ``seconds`` and then holds ``end_rate``.
    Arrivals follow that rate by time rescaling: unit-rate arrivals ``u_i`` (``i`` for constant,
    cumulative unit-mean gaps otherwise) are mapped through the inverse of the integrated rate
    ``Λ(t) = ∫₀ᵗ rate(s) ds``, so request *i* is due when ``Λ(t) = u_i``; for constant arrivals
    that is exactly when the expected count reaches ``i``. ``start_rate`` may be 0.

    Args:
        n: how many arrivals (``--requests``), >= 0.
        rate: mean arrivals per second (``--rate``), > 0; unused when ``ramp`` is given.
        arrival: the gap distribution (``--arrival``).
        burstiness: squared coefficient of variation of gamma gaps (``--burstiness``), > 0;
            only ``gamma`` arrivals accept a value other than 1.
        seed: seed of the random gaps (``--seed``); the same seed gives the same schedule.
        ramp: ``(start_rate, end_rate, seconds)`` (``--ramp``), see above.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise _bad("requests", n, "it must be a whole number >= 0")
    _require_positive("rate", rate)
    if arrival not in _ARRIVALS:
        raise _bad("arrival", arrival, "it must be one of " + ", ".join(map(repr, _ARRIVALS)))
    _require_positive("burstiness", burstiness)
    if arrival != "gamma" and burstiness != 1.0:
        raise _bad("burstiness", burstiness, "it only applies to gamma arrivals")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise _bad("seed", seed, "it must be a whole number >= 0")
    if ramp is not None:
        _check_ramp(ramp)

    units = _unit_arrivals(int(n), arrival, burstiness, int(seed))
    if ramp is None:
        return units / float(rate)
    start_rate, end_rate, seconds = (float(x) for x in ramp)
    return _invert_ramp(units, start_rate, end_rate, seconds)


def _check_ramp(ramp: Sequence[float]) -> None:
    if isinstance(ramp, str | bytes) or not isinstance(ramp, Sequence):
        raise _bad("ramp", ramp, "give START_RATE,END_RATE,SECONDS")
    shown = "(" + ", ".join(_shown(x) for x in ramp) + ")"
    numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for x in ramp)
    if len(ramp) != 3 or not numbers:
        raise _bad_text("ramp", shown, "give three numbers: START_RATE,END_RATE,SECONDS")
    start_rate, end_rate, seconds = ramp
    if not all(math.isfinite(x) for x in ramp):
        raise _bad_text("ramp", shown, "every part must be a finite number")
    if start_rate < 0:
        raise _bad_text("ramp", shown, "its start rate must be >= 0")
    if end_rate <= 0:
        raise _bad_text("ramp", shown, "its end rate must be > 0")
    if seconds <= 0:
        raise _bad_text("ramp", shown, "its duration in seconds must be > 0")


def _unit_arrivals(
    n: int, arrival: Arrival, burstiness: float, seed: int
) -> npt.NDArray[np.float64]:
    """Arrival times of a rate-1 process: the first at 0, then gaps of mean 1."""
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    if arrival == "constant":
        return np.arange(n, dtype=np.float64)
    rng = np.random.default_rng(seed)
    if arrival == "poisson" or burstiness == 1.0:
        gaps = rng.standard_exponential(n - 1)
    else:
        shape = 1.0 / burstiness
        gaps = rng.standard_gamma(shape, n - 1) / shape  # mean shape·1, rescaled to 1
    units = np.empty(n, dtype=np.float64)
    units[0] = 0.0
    np.cumsum(gaps, out=units[1:])
    return units


def _invert_ramp(
    units: npt.NDArray[np.float64], start_rate: float, end_rate: float, seconds: float
) -> npt.NDArray[np.float64]:
    """Map unit-rate arrival times through the inverse of the ramp's integrated rate."""
    # Λ(t) = s·t + a·t² for t <= T, with a = (e − s) / 2T; Λ(T) = (s + e)·T / 2.
    slope = (end_rate - start_rate) / (2.0 * seconds)
    ramp_units = (start_rate + end_rate) * seconds / 2.0
    in_ramp = units <= ramp_units
    u = units[in_ramp]
    # The root of a·t² + s·t − u = 0 written as 2u / (s + sqrt(s² + 4au)): no cancellation when
    # a is tiny, and a = 0 (no ramp at all) needs no special case. The discriminant is >= e² >= 0
    # for u <= Λ(T), also when the rate falls.
    denominator = start_rate + np.sqrt(start_rate * start_rate + 4.0 * slope * u)
    ramped = np.zeros_like(u)
    np.divide(2.0 * u, denominator, out=ramped, where=denominator > 0)  # u = 0 at a 0 start rate
    offsets = np.empty_like(units)
    offsets[in_ramp] = ramped
    offsets[~in_ramp] = seconds + (units[~in_ramp] - ramp_units) / end_rate
    return offsets


def start_at_epoch(epoch_seconds: float, *, loop: asyncio.AbstractEventLoop | None = None) -> float:
    """The event loop's time at the wall-clock instant ``epoch_seconds`` (``--start-at``).

    Several replayer processes given the same ``--start-at`` thereby agree on one start without
    talking to each other; their agreement is as good as their hosts' clock synchronisation
    (NTP: typically well under a millisecond). An instant in the past is allowed: the replay
    then starts late and the lag shows in every request's ``sent_at − scheduled_at``.

    Must be called with a running loop unless ``loop`` is given.
    """
    flag = "start_at"
    if isinstance(epoch_seconds, bool) or not isinstance(epoch_seconds, int | float):
        raise _bad(flag, epoch_seconds, "give seconds since the Unix epoch")
    if not (math.isfinite(epoch_seconds) and epoch_seconds > 0):
        raise _bad(flag, epoch_seconds, "give seconds since the Unix epoch, > 0")
    if epoch_seconds > 1e11:  # year 5138: surely milliseconds or nanoseconds
        raise _bad(flag, epoch_seconds, "it looks like milliseconds; give seconds since the epoch")
    loop = loop or asyncio.get_running_loop()
    # Read the wall clock between two loop-clock readings and use their midpoint, which halves
    # the error of the two reads not being simultaneous.
    before = loop.time()
    wall = time.time_ns()
    after = loop.time()
    return (before + after) / 2.0 + (epoch_seconds - wall / _NS_PER_S)


class Pacer:
    """Sleeps until ``start + offset`` on the event loop's clock, by absolute deadlines.

    Every wait is computed from ``start``, never from the previous wait, so a replay of a
    million requests is as punctual at the end as at the beginning. A wait never returns
    before its deadline.

    ``precise=True`` sleeps until 1.1 ms before the deadline and then yields to the loop
    (``sleep(0)``) until the deadline passes: punctuality to a few microseconds when the loop is
    idle, for the price of a busy loop (that still runs other tasks) in the last millisecond of
    every wait. The default relies on the loop's timer alone, which rounds up to the next whole
    millisecond, so it is late by up to about 1 ms plus whatever the loop was busy with. With
    uvloop, ``loop.time()`` itself has only millisecond resolution, so ``precise`` gains little.

    Args:
        start: the replay's start in ``loop.time()`` units (e.g. ``loop.time()`` itself, or
            :func:`start_at_epoch` of ``--start-at``).
        precise: spin for the last millisecond of each wait.
    """

    __slots__ = ("_perf_start", "_precise", "_start")

    def __init__(self, start: float, *, precise: bool = False) -> None:
        if (
            isinstance(start, bool)
            or not isinstance(start, int | float)
            or not math.isfinite(start)
        ):
            raise ValueError(f"Pacer start has value {start!r}; it must be a finite loop time")
        self._start = float(start)
        self._precise = precise
        self._perf_start: float | None = None

    @property
    def start(self) -> float:
        """The replay's start, in ``loop.time()`` units."""
        return self._start

    @property
    def precise(self) -> bool:
        """Whether waits spin for their last millisecond."""
        return self._precise

    def due(self, offset: float) -> float:
        """The loop time at which ``offset`` falls due."""
        return self._start + offset

    def perf_due(self, offset: float) -> float:
        """The ``time.perf_counter()`` instant at which ``offset`` falls due.

        The start is mapped onto ``perf_counter`` once, at the first wait, so every deadline
        shares one anchor and sub-millisecond lags are measured on a fine clock (uvloop's
        ``loop.time()`` only has millisecond resolution).
        """
        if self._perf_start is None:
            loop = asyncio.get_running_loop()
            self._perf_start = time.perf_counter() + (self._start - loop.time())
        return self._perf_start + offset

    async def wait_until(self, offset: float) -> float:
        """Sleep until ``start + offset``; return the lag, ``now − due``, in seconds (>= 0).

        An offset already in the past returns at once with its (positive) lag.
        """
        loop = asyncio.get_running_loop()
        due = self._start + offset
        perf_due = self.perf_due(offset)
        wake = due - _SPIN_S if self._precise else due
        while (remaining := wake - loop.time()) > 0:
            if remaining <= _SHORT_WAIT_S:
                await _sleep_until(loop, wake)
                break
            await _sleep_until(loop, wake - remaining * _SLACK_MARGIN)
        # The loop fires timers up to its clock resolution early, and a precise wait stops
        # sleeping early on purpose: yield until the deadline has really passed. The spin
        # reads perf_counter, so it is exact even where loop.time() has 1 ms steps.
        if self._precise:
            while time.perf_counter() < perf_due:  # noqa: ASYNC110 (a deliberate spin)
                await asyncio.sleep(0)
        else:
            while loop.time() < due:  # noqa: ASYNC110 (a deliberate spin)
                await asyncio.sleep(0)
        return max(0.0, time.perf_counter() - perf_due)


async def _sleep_until(loop: asyncio.AbstractEventLoop, deadline: float) -> None:
    """Sleep until the loop's clock reads ``deadline`` (``loop.call_at``: no relative delays)."""
    waiter: asyncio.Future[None] = loop.create_future()
    handle = loop.call_at(deadline, _wake, waiter)
    try:
        await waiter
    finally:
        handle.cancel()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
