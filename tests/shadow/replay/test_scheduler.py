"""The fan-out shared by replay and mirror: every send is owned, an exception in one surfaces."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import duckdb
import pytest

from shadow.errors import UsageError
from shadow.replay.breaker import CircuitBreaker
from shadow.replay.mirror import Mirror
from shadow.replay.pricing import DEFAULT_PRICES, PricingTable
from shadow.replay.replayer import Replayer
from shadow.replay.scheduler import FanOut
from shadow.replay.sources import SourceItem
from shadow.replay.targets import Attempt
from shadow.results.store import ResultsStore
from shadow.results.writer import AsyncResultsWriter
from shadow.trace.record import TraceRecord
from tests.shadow.replay.fakes import AnsweringTarget, ListSource, RaisingTarget, records

PRICING = PricingTable(DEFAULT_PRICES)


def result_arms(path: Path) -> dict[str, int]:
    """Result rows per arm in a closed DuckDB store."""
    with duckdb.connect(str(path), read_only=True) as con:
        return dict(con.execute("select arm, count(*) from results group by arm").fetchall())


async def test_an_exception_in_a_send_surfaces_from_the_replay(tmp_path: Path) -> None:
    """A target that raises stops the replay with its own exception, not a silent gap."""
    store = ResultsStore.open(tmp_path / "run.duckdb")
    store.start_run("r", source="test", config={}, arms=["baseline", "candidate"])
    items = [SourceItem(record=r, position=None) for r in records(20)]
    async with AsyncResultsWriter(store) as writer:
        replayer = Replayer(
            FanOut(
                run_id="r",
                targets={"baseline": AnsweringTarget("baseline"), "candidate": RaisingTarget("c")},
                writer=writer,
                pricing=PRICING,
            ),
            items=items,
            offsets=[0.001 * i for i in range(20)],
        )
        with pytest.raises(RuntimeError, match="bug in the c target"):
            await replayer.run()
    store.close()
    assert replayer.stats.scheduled < 20  # the first failure stopped the schedule
    assert replayer.stats.in_flight == 0  # every send task was accounted for


async def test_an_exception_in_a_send_surfaces_from_the_mirror(tmp_path: Path) -> None:
    """The mirror shares the fan-out: a raising candidate ends run() with that exception."""
    store = ResultsStore.open(tmp_path / "run.duckdb")
    store.start_run("m", source="test", config={}, arms=["production", "candidate"])
    async with AsyncResultsWriter(store) as writer:
        mirror = Mirror(
            FanOut(
                run_id="m",
                source=ListSource(records(5)),
                targets={"candidate": RaisingTarget("candidate")},
                writer=writer,
                pricing=PRICING,
            )
        )
        with pytest.raises(RuntimeError, match="bug in the candidate target"):
            await mirror.run()
    store.close()
    assert result_arms(tmp_path / "run.duckdb").get("candidate", 0) == 0


async def test_the_mirror_writes_production_and_candidate_and_commits_after_flush(
    tmp_path: Path,
) -> None:
    """Each record yields a production row and a candidate row; every position is committed."""
    source = ListSource(records(6))
    store = ResultsStore.open(tmp_path / "run.duckdb")
    store.start_run("m", source="test", config={}, arms=["production", "candidate"])
    candidate = AnsweringTarget("candidate")
    async with AsyncResultsWriter(store) as writer:
        mirror = Mirror(
            FanOut(
                run_id="m",
                source=source,
                targets={"candidate": candidate},
                writer=writer,
                pricing=PRICING,
            )
        )
        stats = await mirror.run()  # the list source ends, so the mirror does too
    store.close()
    assert result_arms(tmp_path / "run.duckdb") == {"production": 6, "candidate": 6}
    assert candidate.sent == [f"t{i:03d}" for i in range(6)]
    assert sorted(source.committed) == [("t", 0, i) for i in range(6)]
    assert stats.total == 6
    assert stats.arm("candidate").ok == 6


async def test_dispatch_outside_run_is_refused(tmp_path: Path) -> None:
    """A send can only start while run() owns the task group (no fire-and-forget)."""
    store = ResultsStore.open(tmp_path / "run.duckdb")
    async with AsyncResultsWriter(store) as writer:
        fanout = FanOut(
            run_id="r",
            targets={"baseline": AnsweringTarget("baseline")},
            writer=writer,
            pricing=PRICING,
        )
        item = SourceItem(record=records(1)[0], position=None)
        with pytest.raises(RuntimeError, match="only valid while"):
            await fanout.dispatch(item, ["baseline"], due=0.0, scheduled_at=0.0)
    store.close()


async def test_force_stop_cancels_sends_and_counts_them(tmp_path: Path) -> None:
    """force_stop cancels what is under way; each cancelled send is counted, none is lost."""

    class Hanging(AnsweringTarget):
        async def send(self, record: TraceRecord, *, due: float) -> Attempt:
            replayer.force_stop()  # the first send stops the run while the others are pending
            await asyncio.Event().wait()
            raise AssertionError("a cancelled send never gets here")

    store = ResultsStore.open(tmp_path / "run.duckdb")
    store.start_run("r", source="test", config={}, arms=["baseline"])
    async with AsyncResultsWriter(store) as writer:
        replayer = Replayer(
            FanOut(
                run_id="r",
                targets={"baseline": Hanging("baseline")},
                writer=writer,
                pricing=PRICING,
            ),
            items=[SourceItem(record=r, position=None) for r in records(3)],
            offsets=[0.0, 0.0, 0.0],
        )
        stats = await replayer.run()
    store.close()
    assert stats.stopped_early
    assert stats.in_flight == 0
    assert stats.arm("baseline").errors == {"cancelled": stats.scheduled}


async def test_a_source_error_surfaces_as_itself_not_as_a_task_group(tmp_path: Path) -> None:
    """An error raised while following the source comes out of run() unwrapped (one CLI line)."""

    class Broken(ListSource):
        async def __aiter__(self) -> AsyncIterator[SourceItem]:
            yield self.items[0]
            raise UsageError("topic t has gone")

    store = ResultsStore.open(tmp_path / "run.duckdb")
    store.start_run("m", source="test", config={}, arms=["production", "candidate"])
    async with AsyncResultsWriter(store) as writer:
        mirror = Mirror(
            FanOut(
                run_id="m",
                source=Broken(records(3)),
                targets={"candidate": AnsweringTarget("candidate")},
                writer=writer,
                pricing=PRICING,
            )
        )
        with pytest.raises(UsageError, match="topic t has gone"):
            await mirror.run()
    store.close()


async def test_sends_failing_together_surface_as_the_first_error(tmp_path: Path) -> None:
    """Two arms hitting a bug at once end run() with one error (not a group), noting the other."""
    store = ResultsStore.open(tmp_path / "run.duckdb")
    store.start_run("r", source="test", config={}, arms=["baseline", "candidate"])
    items = [SourceItem(record=r, position=None) for r in records(5)]
    targets = {"baseline": RaisingTarget("b"), "candidate": RaisingTarget("c")}
    async with AsyncResultsWriter(store) as writer:
        replayer = Replayer(
            FanOut(run_id="r", targets=targets, writer=writer, pricing=PRICING),
            items=items,
            offsets=[0.0] * 5,  # every send at once: both arms raise together
        )
        with pytest.raises(RuntimeError, match=r"bug in the [bc] target") as caught:
            await replayer.run()
    store.close()
    notes = getattr(caught.value, "__notes__", [])
    assert len(notes) == 1
    assert "more send(s) failed at the same time" in notes[0]


async def test_a_retry_the_breaker_skips_keeps_the_failed_first_attempt(tmp_path: Path) -> None:
    """A 5xx, then the breaker opens: the failed attempt 0 stays, the skip is attempt 1."""

    class Failing(AnsweringTarget):
        async def send(self, record: TraceRecord, *, due: float) -> Attempt:
            return Attempt(sent_at=time.time(), status=503, latency_ms=2.0, error="http_5xx")

    breaker = CircuitBreaker(error_rate=0.5, min_requests=1, cooldown_s=3600.0)
    store = ResultsStore.open(tmp_path / "run.duckdb")
    store.start_run("r", source="test", config={}, arms=["candidate"])
    async with AsyncResultsWriter(store) as writer:
        fanout = FanOut(
            run_id="r",
            targets={"candidate": Failing("candidate")},
            writer=writer,
            pricing=PRICING,
            breakers={"candidate": breaker},
            retries=1,
        )
        await Replayer(
            fanout, items=[SourceItem(record=records(1)[0], position=None)], offsets=[0.0]
        ).run()
    store.close()
    with duckdb.connect(str(tmp_path / "run.duckdb"), read_only=True) as con:
        rows = con.execute("select attempt, error from results order by attempt").fetchall()
    assert rows == [(0, "http_5xx"), (1, "skipped_breaker")]
