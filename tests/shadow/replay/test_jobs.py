"""run_replay and run_mirror: a whole run from its settings, on real mock-llm servers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from shadow.config import ArmConfig
from shadow.replay.jobs import MirrorJob, ReplayJob, run_mirror, run_replay
from shadow.replay.plan import Pacing
from shadow.replay.pricing import DEFAULT_PRICES, PricingTable
from shadow.replay.session import UnknownRunError
from shadow.sim import MockLLMServer
from tests.shadow.replay.fakes import trace_file

PRICING = PricingTable(DEFAULT_PRICES)


def job(tmp_path: Path, url: str, n: int = 8, **options: object) -> ReplayJob:
    """A replay of ``n`` records to ``url`` on both arms, 100 times faster than recorded."""
    arm = ArmConfig(url=url, timeout_s=10)
    return ReplayJob(
        source=trace_file(tmp_path, n),
        out=str(tmp_path / "run.duckdb"),
        arms={"baseline": arm, "candidate": arm},
        pricing=PRICING,
        pacing=Pacing(speed=100),
        **options,  # type: ignore[arg-type]
    )


async def test_a_replay_job_runs_to_done_and_returns_its_summary(
    mock_large: MockLLMServer, tmp_path: Path
) -> None:
    """Every record reaches both arms; the outcome carries the status and the JSON summary."""
    outcome = await run_replay(job(tmp_path, mock_large.url, run_id="j1"))
    assert outcome.status == "done"
    assert outcome.run_id == "j1"
    assert outcome.summary["records"] == 8
    assert outcome.summary["out"] == str(tmp_path / "run.duckdb")
    assert outcome.summary["dead_letter"] == 0
    with duckdb.connect(str(tmp_path / "run.duckdb"), read_only=True) as con:
        assert con.execute("select status from runs").fetchall() == [("done",)]
        assert con.execute("select count(*) from results").fetchone() == (16,)


async def test_a_resumed_job_sends_only_what_is_missing(
    mock_large: MockLLMServer, tmp_path: Path
) -> None:
    """Resuming a finished run skips every record it already answered."""
    await run_replay(job(tmp_path, mock_large.url, run_id="j2"))
    outcome = await run_replay(job(tmp_path, mock_large.url, run_id="j2", resume=True))
    assert outcome.status == "done"
    assert outcome.summary["skipped_done"] == 8
    assert outcome.summary["scheduled"] == 0


async def test_a_dry_run_job_sends_nothing_and_opens_no_store(tmp_path: Path) -> None:
    """A dry run returns the plan (sharded here); no results store is created."""
    outcome = await run_replay(job(tmp_path, "http://127.0.0.1:9", n=6, shard=(0, 2)), dry_run=True)
    assert outcome.dry_run is not None
    assert [row.trace_id for row in outcome.dry_run.rows] == ["t000", "t002", "t004"]
    assert outcome.stats is None
    assert not (tmp_path / "run.duckdb").exists()


async def test_resuming_an_unknown_run_is_a_library_error(tmp_path: Path) -> None:
    """The job raises the facts; nothing is recorded for the unknown run."""
    with pytest.raises(UnknownRunError, match="'ghost'"):
        await run_replay(job(tmp_path, "http://127.0.0.1:9", run_id="ghost", resume=True))


def test_the_cli_words_an_unknown_resume_with_its_flag(tmp_path: Path) -> None:
    """`shadow replay --resume ID` on a store without it: one line naming the flag, exit 2."""
    result = subprocess.run(
        [sys.executable, "-m", "shadow", "replay", trace_file(tmp_path, 2), "--baseline",
         "http://127.0.0.1:9", "--candidate", "http://127.0.0.1:9", "--resume", "ghost",
         "--out", str(tmp_path / "run.duckdb")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"shadow: error: --resume ghost: no results for that run in {tmp_path / 'run.duckdb'}; "
        "check the run id (shadow replay lists it in its summary)"
    )


async def test_a_mirror_job_stores_production_and_candidate(
    mock_large: MockLLMServer, tmp_path: Path
) -> None:
    """A mirror of a source that ends stores both arms and ends `done`."""
    outcome = await run_mirror(
        MirrorJob(
            source=trace_file(tmp_path, 4),
            out=str(tmp_path / "mirror.duckdb"),
            candidate=ArmConfig(url=mock_large.url, timeout_s=10),
            pricing=PRICING,
            run_id="m1",
        )
    )
    assert outcome.status == "done"
    assert outcome.summary["arms"] == outcome.stats.as_dict()["arms"]
    with duckdb.connect(str(tmp_path / "mirror.duckdb"), read_only=True) as con:
        per_arm = dict(con.execute("select arm, count(*) from results group by arm").fetchall())
    assert per_arm == {"production": 4, "candidate": 4}
