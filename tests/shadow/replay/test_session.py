"""RunSession owns a run's life: start, the status it ends with (failed on a crash), close order."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import duckdb
import pytest

from shadow.errors import AnalysisError, UsageError
from shadow.replay.pricing import DEFAULT_PRICES, PricingTable
from shadow.replay.replayer import Replayer
from shadow.replay.scheduler import FanOut
from shadow.replay.session import RunSession, UnknownRunError, run_status
from shadow.replay.sources import load_sorted
from shadow.replay.stats import ReplayStats
from shadow.replay.targets import Target
from shadow.results.process import ProcessSink
from shadow.results.views import results_relation
from tests.shadow.replay.fakes import AnsweringTarget, RaisingTarget, trace_file

PRICING = PricingTable(DEFAULT_PRICES)
ARMS = ["baseline", "candidate"]


def run_row(out: Path, run_id: str) -> tuple[str, dict[str, object], int]:
    """The run's status, its counts and its number of result rows, from the closed store."""
    with duckdb.connect(str(out), read_only=True) as con:
        row = con.execute("select status, counts from runs where run_id = ?", [run_id]).fetchone()
        count = con.execute("select count(*) from results where run_id = ?", [run_id]).fetchone()
    assert row is not None
    assert count is not None
    counts = json.loads(row[1]) if row[1] else {}
    return row[0], counts, count[0]


async def replay_in_session(
    session: RunSession,
    targets: dict[str, Target],
    *,
    stop_first: bool = False,
    **options: float,
) -> Replayer:
    """Begin run ``r`` in ``session`` and replay its source to ``targets``."""
    items = await load_sorted(session.source)
    session.begin("r", arms=list(targets), config={"test": True}, targets=targets)
    fanout = FanOut(
        run_id="r",
        targets=session.targets,
        writer=session.writer,
        pricing=PRICING,
        source=session.source,
        **options,  # type: ignore[arg-type]
    )
    replayer = Replayer(fanout, items=items, offsets=[0.001 * i for i in range(len(items))])
    session.track(replayer.stats)
    if stop_first:
        replayer.request_stop()
    await replayer.run()
    return replayer


async def test_a_finished_replay_is_done_with_its_counts_and_every_row(tmp_path: Path) -> None:
    """A replay that runs to its end is `done`; the writer was flushed before the store closed."""
    out = tmp_path / "run.duckdb"
    targets: dict[str, Target] = {arm: AnsweringTarget(arm) for arm in ARMS}
    async with RunSession(trace_file(tmp_path, 10), out=str(out)) as session:
        await replay_in_session(session, targets)
    assert session.status == "done"
    status, counts, rows = run_row(out, "r")
    assert (status, rows) == ("done", 20)
    assert counts["scheduled"] == 10
    assert counts == session.summary
    assert all(isinstance(t, AnsweringTarget) and t.closed == 1 for t in targets.values())


async def test_a_crashed_run_is_marked_failed_and_the_exception_propagates(
    tmp_path: Path,
) -> None:
    """An exception in a send leaves the block: the run is written `failed`, then re-raised."""
    out = tmp_path / "run.duckdb"
    raising = RaisingTarget("candidate")
    targets: dict[str, Target] = {"baseline": AnsweringTarget("baseline"), "candidate": raising}
    with pytest.raises(RuntimeError, match="bug in the candidate target"):
        async with RunSession(trace_file(tmp_path, 10), out=str(out)) as session:
            await replay_in_session(session, targets)
    assert session.status == "failed"
    status, counts, _ = run_row(out, "r")
    assert status == "failed"
    assert "arms" in counts  # the figures up to the crash are kept
    assert raising.closed == 1  # targets are closed on the failing path too


async def test_a_stopped_replay_is_interrupted(tmp_path: Path) -> None:
    """A replay asked to stop before its end is `interrupted` (the CLI exits 1 for it)."""
    out = tmp_path / "run.duckdb"
    targets: dict[str, Target] = {arm: AnsweringTarget(arm) for arm in ARMS}
    async with RunSession(trace_file(tmp_path, 10), out=str(out)) as session:
        await replay_in_session(session, targets, stop_first=True)
    assert run_row(out, "r")[0] == "interrupted"


async def test_a_budget_stop_is_budget_exhausted(tmp_path: Path) -> None:
    """A replay stopped by the cost cap ends `budget_exhausted`, not `done` nor `interrupted`."""
    out = tmp_path / "run.duckdb"
    targets: dict[str, Target] = {arm: AnsweringTarget(arm, tokens=1000) for arm in ARMS}
    async with RunSession(trace_file(tmp_path, 30), out=str(out)) as session:
        replayer = await replay_in_session(session, targets, max_cost_usd=0.05, max_in_flight=1)
    assert replayer.stats.budget_exhausted
    assert replayer.stats.scheduled < 30
    assert session.status == "budget_exhausted"
    assert run_row(out, "r")[0] == "budget_exhausted"


async def test_a_cancelled_run_is_interrupted(tmp_path: Path) -> None:
    """Cancelled from outside (not broken), the run is written `interrupted`."""
    out = tmp_path / "run.duckdb"
    started = asyncio.Event()

    async def run() -> None:
        async with RunSession(trace_file(tmp_path, 3), out=str(out)) as session:
            session.begin("r", arms=ARMS, config={}, targets={})
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(run())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert run_row(out, "r")[0] == "interrupted"


async def test_resuming_a_run_without_results_names_the_run_and_starts_nothing(
    tmp_path: Path,
) -> None:
    """Resuming an unknown run is an error with the facts (no CLI flag); no run is recorded."""
    out = tmp_path / "run.duckdb"
    target = AnsweringTarget("baseline")
    with pytest.raises(UnknownRunError) as info:
        async with RunSession(trace_file(tmp_path, 3), out=str(out)) as session:
            session.begin("nope", arms=["baseline"], config={}, targets={"baseline": target},
                          resume=True)  # fmt: skip
    assert (info.value.run_id, info.value.out) == ("nope", str(out))
    assert "--" not in str(info.value)
    assert target.closed == 1
    with duckdb.connect(str(out), read_only=True) as con:
        assert con.execute("select count(*) from runs").fetchone() == (0,)


async def test_a_bad_source_fails_before_anything_is_opened(tmp_path: Path) -> None:
    """A source spec that cannot be opened raises on entry; no store file is created."""
    with pytest.raises(UsageError, match="does not exist"):
        async with RunSession(str(tmp_path / "missing.jsonl"), out=str(tmp_path / "o.duckdb")):
            pass
    assert not (tmp_path / "o.duckdb").exists()


def test_run_status_reads_the_stats() -> None:
    """Budget beats a stop; a stopped replay is interrupted, a stopped mirror done."""
    stats = ReplayStats(run_id="r", total=1)
    assert run_status(stats) == "done"
    stats.stopped_early = True
    assert run_status(stats) == "interrupted"
    assert run_status(stats, live=True) == "done"
    stats.budget_exhausted = True
    assert run_status(stats) == "budget_exhausted"
    assert run_status(stats, live=True) == "budget_exhausted"


@pytest.mark.parametrize("layout", ["run.duckdb", "parts/"])
async def test_with_a_writer_process_every_row_is_stored(tmp_path: Path, layout: str) -> None:
    """The rows leave the replaying process and are all stored, in either layout."""
    out = str(tmp_path / layout)
    targets: dict[str, Target] = {arm: AnsweringTarget(arm) for arm in ARMS}
    async with RunSession(trace_file(tmp_path, 30), out=out, writer_process=True) as session:
        await replay_in_session(session, targets)
        assert session.writer.rows_written == 60
    assert session.status == "done"
    with duckdb.connect() as con:
        results_relation(con, out)
        assert con.execute("select count(*) from results").fetchone() == (60,)
        assert con.execute("select count(*) from traces").fetchone() == (30,)


async def _replay_killing_the_writer(session: RunSession, targets: dict[str, Target]) -> None:
    async with session:
        items = await load_sorted(session.source)
        session.begin("r", arms=ARMS, config={}, targets=targets)
        sink = session.writer.sink
        assert isinstance(sink, ProcessSink)
        assert sink._process.pid is not None
        os.kill(sink._process.pid, signal.SIGKILL)
        fanout = FanOut(run_id="r", targets=session.targets, writer=session.writer, pricing=PRICING)
        replayer = Replayer(fanout, items=items, offsets=[0.0] * len(items))
        session.track(replayer.stats)
        await replayer.run()


async def test_a_writer_process_that_dies_fails_the_run(tmp_path: Path) -> None:
    """A killed writer process is reported (the run ends `failed` with its error), never hung."""
    out = tmp_path / "run.duckdb"
    targets: dict[str, Target] = {arm: AnsweringTarget(arm) for arm in ARMS}
    session = RunSession(trace_file(tmp_path, 10), out=str(out), writer_process=True)
    with pytest.raises(AnalysisError, match="results writer process exited"):
        await _replay_killing_the_writer(session, targets)
    assert session.status == "failed"
    assert run_row(out, "r")[0] == "failed"
