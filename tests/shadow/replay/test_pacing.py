"""shadow.replay.pacing: recorded and synthetic schedules, and the absolute-deadline pacer."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from shadow.errors import UsageError
from shadow.replay import pacing
from shadow.replay.pacing import (
    Arrival,
    Pacer,
    recorded_schedule,
    start_at_epoch,
    synthetic_schedule,
)

EPOCH_NS = 1_700_000_000_123_456_789  # Nov 2023 in epoch nanoseconds: float64 cannot hold it


# ---------------------------------------------------------------------------------------------
# recorded_schedule
# ---------------------------------------------------------------------------------------------


def test_recorded_gaps_are_exact_at_epoch_nanoseconds() -> None:
    """Gaps of 1 ns to 1 s between epoch-nanosecond timestamps come out exactly, t_0 at 0."""
    gaps_ns = [1, 999, 1_000, 1_000_000, 1_000_000_000, 7]
    stamps = list(np.cumsum([EPOCH_NS, *gaps_ns]).tolist())
    offsets = recorded_schedule(stamps, speed=1.0)
    assert offsets.dtype == np.float64
    assert offsets[0] == 0.0
    np.testing.assert_allclose(np.diff(offsets), np.array(gaps_ns) / 1e9, rtol=0, atol=1e-12)


def test_recorded_offsets_are_exact_over_a_long_recording() -> None:
    """A gap of one microsecond after 30 days of recording is still one microsecond."""
    month_ns = 30 * 86_400 * 1_000_000_000
    stamps = [EPOCH_NS, EPOCH_NS + month_ns, EPOCH_NS + month_ns + 1_000]
    offsets = recorded_schedule(stamps, speed=1.0)
    assert offsets[1] == 30 * 86_400.0
    assert offsets[2] - offsets[1] == pytest.approx(1e-6, abs=1e-9)


def test_recorded_schedule_divides_by_speed() -> None:
    """Speed 2 halves every gap and speed 0.5 doubles it."""
    stamps = [EPOCH_NS + k * 250_000_000 for k in range(5)]  # every 250 ms
    np.testing.assert_allclose(recorded_schedule(stamps, speed=2.0), [0, 0.125, 0.25, 0.375, 0.5])
    np.testing.assert_allclose(recorded_schedule(stamps, speed=0.5), [0, 0.5, 1.0, 1.5, 2.0])


def test_recorded_schedule_accepts_numpy_int64() -> None:
    """An int64 array (a Parquet or DuckDB column) gives the same offsets as a list."""
    stamps = [EPOCH_NS, EPOCH_NS + 3, EPOCH_NS + 5_000_000_000]
    np.testing.assert_array_equal(
        recorded_schedule(np.array(stamps, dtype=np.int64), speed=3.0),
        recorded_schedule(stamps, speed=3.0),
    )


def test_recorded_schedule_with_a_shared_origin() -> None:
    """A replayer holding only part of a recording keeps offsets from the shared t_0."""
    stamps = [EPOCH_NS + 2_000_000_000, EPOCH_NS + 3_000_000_000]
    assert recorded_schedule(stamps, speed=1.0, origin_ns=EPOCH_NS).tolist() == [2.0, 3.0]


def test_recorded_schedule_measures_from_the_earliest_by_default() -> None:
    """Out-of-order timestamps measure from the earliest, so no offset is negative."""
    stamps = [EPOCH_NS + 1_000_000_000, EPOCH_NS, EPOCH_NS + 500_000_000]
    assert recorded_schedule(stamps, speed=1.0).tolist() == [1.0, 0.0, 0.5]


def test_recorded_schedule_of_nothing_is_empty() -> None:
    """No timestamps give an empty schedule."""
    assert recorded_schedule([], speed=1.0).shape == (0,)


@pytest.mark.parametrize("speed", [0, -3, float("nan"), float("inf")])
def test_recorded_schedule_rejects_a_bad_speed(speed: float) -> None:
    """A speed that is not a finite positive number is a usage error naming --speed."""
    with pytest.raises(UsageError, match=r"^speed has value .*; it must be > 0$"):
        recorded_schedule([EPOCH_NS], speed=speed)


def test_recorded_schedule_rejects_float_timestamps() -> None:
    """Float timestamps (already rounded) are refused rather than silently truncated."""
    with pytest.raises(UsageError, match="integer epoch nanoseconds"):
        recorded_schedule([1.7e18, 1.7e18 + 1e3], speed=1.0)  # type: ignore[list-item]


# ---------------------------------------------------------------------------------------------
# synthetic_schedule
# ---------------------------------------------------------------------------------------------


def test_constant_arrivals_are_exactly_one_over_rate_apart() -> None:
    """Constant arrivals at 8/s are at exactly i/8 seconds."""
    offsets = synthetic_schedule(5, rate=8.0, arrival="constant")
    assert offsets.tolist() == [0.0, 0.125, 0.25, 0.375, 0.5]


@pytest.mark.parametrize(
    ("arrival", "burstiness"), [("poisson", 1.0), ("gamma", 4.0), ("gamma", 0.25)]
)
def test_random_arrivals_keep_the_mean_rate(arrival: Arrival, burstiness: float) -> None:
    """Poisson and gamma arrivals average the requested rate over 20,000 requests."""
    n, rate = 20_000, 50.0
    offsets = synthetic_schedule(n, rate=rate, arrival=arrival, burstiness=burstiness, seed=3)
    assert offsets[0] == 0.0
    assert np.all(np.diff(offsets) >= 0)
    observed = (n - 1) / offsets[-1]
    # The mean of 19,999 gaps with CV up to 2 has a relative standard error under 1.5%.
    assert observed == pytest.approx(rate, rel=0.06)


@pytest.mark.parametrize(("burstiness", "cv"), [(1.0, 1.0), (4.0, 2.0), (0.25, 0.5)])
def test_gamma_gaps_have_cv_sqrt_burstiness(burstiness: float, cv: float) -> None:
    """The gaps' coefficient of variation is sqrt(burstiness): 4 gives 2, 0.25 gives 0.5."""
    gaps = np.diff(synthetic_schedule(20_000, rate=10.0, arrival="gamma", burstiness=burstiness))
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.10)


def test_gamma_with_burstiness_one_is_the_poisson_schedule() -> None:
    """Burstiness 1 is a Poisson process: the very same schedule as poisson for a seed."""
    np.testing.assert_array_equal(
        synthetic_schedule(100, rate=5.0, arrival="gamma", burstiness=1.0, seed=9),
        synthetic_schedule(100, rate=5.0, arrival="poisson", seed=9),
    )


def test_same_seed_same_schedule_other_seed_other_schedule() -> None:
    """A seed reproduces a schedule exactly, and another seed gives another."""
    first = synthetic_schedule(1_000, rate=20.0, arrival="gamma", burstiness=2.0, seed=42)
    again = synthetic_schedule(1_000, rate=20.0, arrival="gamma", burstiness=2.0, seed=42)
    other = synthetic_schedule(1_000, rate=20.0, arrival="gamma", burstiness=2.0, seed=43)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("n", [0, 1])
def test_tiny_schedules(n: int) -> None:
    """Zero requests give no offsets and one request is due at once."""
    for arrival in ("constant", "poisson", "gamma"):
        assert synthetic_schedule(n, rate=1.0, arrival=arrival).tolist() == [0.0] * n


def test_constant_ramp_follows_the_integrated_rate() -> None:
    """A 10→100/s ramp over 10 s sends 14.5 requests in its first second, then holds 100/s."""
    offsets = synthetic_schedule(2_000, rate=1.0, arrival="constant", ramp=(10.0, 100.0, 10.0))
    # Λ(1) = 10·1 + (90 / 20)·1² = 14.5: requests 0..14 are due within the first second.
    assert int(np.sum(offsets < 1.0)) == 15
    # The first gap is at the start rate's pace (just under 1/10 s since the rate is rising).
    assert 0.095 < offsets[1] - offsets[0] < 0.1
    # Λ(10) = 550 requests during the ramp, then every gap is exactly 1/100 s.
    assert int(np.sum(offsets < 10.0)) == 550
    np.testing.assert_allclose(np.diff(offsets[551:]), 0.01, rtol=1e-9)
    assert offsets[-1] == pytest.approx(10.0 + (1_999 - 550) / 100.0)


def test_poisson_ramp_rates_in_the_first_and_last_windows() -> None:
    """A Poisson 20→200/s ramp averages about 29/s over its first second and 200/s after it."""
    offsets = synthetic_schedule(
        20_000, rate=1.0, arrival="poisson", seed=5, ramp=(20.0, 200.0, 30.0)
    )
    first = int(np.sum(offsets < 1.0))
    assert first == pytest.approx(20.0 + 180.0 / 60.0, abs=4 * 23.0**0.5)  # Λ(1) = 23
    held = offsets[offsets >= 30.0]
    assert (len(held) - 1) / (held[-1] - held[0]) == pytest.approx(200.0, rel=0.05)


def test_ramp_can_fall_and_can_start_from_zero() -> None:
    """A falling ramp and a ramp from 0/s both give sorted offsets at the held end rate."""
    falling = synthetic_schedule(300, rate=1.0, arrival="constant", ramp=(100.0, 10.0, 2.0))
    assert np.all(np.diff(falling) > 0)
    np.testing.assert_allclose(np.diff(falling[falling > 2.0]), 0.1, rtol=1e-9)
    rising = synthetic_schedule(50, rate=1.0, arrival="constant", ramp=(0.0, 10.0, 4.0))
    assert rising[0] == 0.0
    assert rising[1] == pytest.approx((2 * 4.0 / 10.0) ** 0.5)  # Λ(t) = 10t²/8 = 1
    assert np.all(np.diff(rising) > 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0}, "rate has value 0; it must be > 0"),
        ({"rate": -2.5}, "rate has value -2.5; it must be > 0"),
        ({"rate": float("inf")}, "rate has value inf; it must be > 0"),
        ({"n": -1}, "requests has value -1; it must be a whole number >= 0"),
        (
            {"arrival": "uniform"},
            "arrival has value 'uniform'; it must be one of 'constant', 'poisson', 'gamma'",
        ),
        ({"arrival": "gamma", "burstiness": 0}, "burstiness has value 0; it must be > 0"),
        ({"burstiness": 2.0}, "burstiness has value 2; it only applies to gamma arrivals"),
        ({"seed": -1}, "seed has value -1; it must be a whole number >= 0"),
        ({"ramp": (1.0, 0.0, 5.0)}, "ramp has value (1, 0, 5); its end rate must be > 0"),
        ({"ramp": (-1.0, 2.0, 5.0)}, "ramp has value (-1, 2, 5); its start rate must be >= 0"),
        (
            {"ramp": (1.0, 2.0, 0.0)},
            "ramp has value (1, 2, 0); its duration in seconds must be > 0",
        ),
        (
            {"ramp": (1.0, 2.0)},
            "ramp has value (1, 2); give three numbers: START_RATE,END_RATE,SECONDS",
        ),
    ],
)
def test_synthetic_schedule_validation_names_the_setting(
    kwargs: dict[str, object], message: str
) -> None:
    """Each bad input is a one-line usage error naming the setting, its value and the fix."""
    args: dict[str, object] = {"n": 10, "rate": 1.0, "arrival": "poisson", **kwargs}
    with pytest.raises(UsageError) as caught:
        synthetic_schedule(**args)  # type: ignore[arg-type]
    assert str(caught.value) == message
    assert caught.value.setting == message.split(" has value")[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "0"], "shadow: error: --rate has value 0; it must be > 0"),
        (["--speed", "-3"], "shadow: error: --speed has value -3; it must be > 0"),
        (
            ["--rate", "2", "--burstiness", "2"],
            "shadow: error: --burstiness has value 2; it only applies to gamma arrivals",
        ),
    ],
)
def test_the_cli_names_the_flag_of_a_bad_setting(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """`shadow replay` says which flag held the bad value, in one line, exit 2."""
    from shadow.trace.jsonl import write_jsonl
    from shadow.trace.record import HttpRequest, TraceRecord

    source = tmp_path / "t.jsonl"
    request = HttpRequest(method="POST", path="/v1/chat/completions", headers={}, body="{}")
    write_jsonl(source, [TraceRecord(trace_id="t1", captured_at=1, request=request)])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "shadow",
            "replay",
            str(source),
            "--baseline",
            "http://127.0.0.1:9",
            "--candidate",
            "http://127.0.0.1:9",
            "--out",
            str(tmp_path / "r.duckdb"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [message]


# ---------------------------------------------------------------------------------------------
# Pacer and start_at_epoch (measurements on the real clock: tolerances are generous)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("precise", [False, True])
async def test_pacer_waits_are_never_early_and_do_not_drift(precise: bool) -> None:
    """200 waits 2 ms apart are each on or after their deadline, and the last is on time."""
    loop = asyncio.get_running_loop()
    pacer = Pacer(loop.time(), precise=precise)
    for i in range(200):
        offset = i * 0.002
        lag = await pacer.wait_until(offset)
        # Each mode keeps its deadline on the clock it waits on: a precise pacer spins on
        # perf_counter (the loop's clock is mapped onto it once, to within a clock read).
        if precise:
            late = time.perf_counter() - pacer.perf_due(offset)
        else:
            late = loop.time() - pacer.due(offset)
        assert late >= 0.0
        # The lag it reports is the lateness a caller measures.
        assert lag == pytest.approx(late, abs=0.005)
    # 200 relative sleeps would each add the loop's lateness; absolute deadlines do not.
    assert loop.time() - (pacer.start + 199 * 0.002) < 0.020


async def test_pacer_serves_concurrent_waiters_open_loop() -> None:
    """Concurrent waiters, one task per request as a replayer runs them, all wake on time."""
    loop = asyncio.get_running_loop()
    pacer = Pacer(loop.time() + 0.01)
    offsets = [i * 0.001 for i in range(100)]

    async def waiter(offset: float) -> tuple[float, float]:
        lag = await pacer.wait_until(offset)
        return lag, loop.time() - (pacer.start + offset)

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(waiter(offset)) for offset in offsets]
    measured = [task.result() for task in tasks]
    assert all(late >= 0.0 for _, late in measured)  # nobody woke before its deadline
    assert all(lag == pytest.approx(late, abs=0.005) for lag, late in measured)
    assert max(lag for lag, _ in measured) < 0.050


async def test_a_long_wait_sleeps_in_shrinking_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long wait wakes early and sleeps the rest again, so Linux's timer slack (up to 1/500
    of a sleep, niced) cannot make it late: each piece ends before the wake by more than its
    slack, and the last ends at the wake (the spin window before the deadline)."""
    pieces: list[tuple[float, float]] = []  # (how long the piece asked for, its deadline)
    real = pacing._sleep_until

    async def recorded(loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        pieces.append((deadline - loop.time(), deadline))
        await real(loop, deadline)

    monkeypatch.setattr(pacing, "_sleep_until", recorded)
    loop = asyncio.get_running_loop()
    pacer = Pacer(loop.time(), precise=True)
    lag = await pacer.wait_until(0.45)
    wake = pacer.due(0.45) - pacing._SPIN_S
    assert len(pieces) >= 2
    for asked, deadline in pieces[:-1]:
        assert wake - deadline >= asked / 500  # more margin than the slack of that piece
    assert pieces[-1][1] == wake
    assert pieces[-1][0] <= pacing._SHORT_WAIT_S
    assert lag >= 0.0


async def test_pacer_returns_at_once_for_a_past_deadline() -> None:
    """An offset already in the past returns immediately with its lag."""
    loop = asyncio.get_running_loop()
    pacer = Pacer(loop.time() - 1.0)
    lag = await pacer.wait_until(0.5)
    assert 0.5 <= lag < 0.6


async def test_start_at_epoch_maps_wall_clock_to_loop_time() -> None:
    """--start-at 50 ms from now is 50 ms from now on the loop's clock."""
    loop = asyncio.get_running_loop()
    start = start_at_epoch(time.time() + 0.05)
    assert start - loop.time() == pytest.approx(0.05, abs=0.005)


async def test_start_at_epoch_rejects_milliseconds() -> None:
    """An epoch in milliseconds is refused with the fix in the message."""
    with pytest.raises(UsageError, match=r"^start_at has value .*; it looks like milliseconds"):
        start_at_epoch(time.time() * 1000)
