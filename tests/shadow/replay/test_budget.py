"""A budget must be enforceable: unpriced models refuse the start or stop the run, never free.

Real mock-llm servers on 127.0.0.1; nothing listens on port 9 (a refused start sends nothing).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from shadow.config import ArmConfig, ModelPrice, ReplayConfig, SafetyConfig
from shadow.replay.budget import UnpricedModelsError, check_priced, planned_models
from shadow.replay.jobs import MirrorJob, ReplayJob, run_mirror, run_replay
from shadow.replay.plan import Pacing
from shadow.replay.pricing import DEFAULT_PRICES, PricingTable
from shadow.sim import MockLLMServer
from shadow.trace.jsonl import read_jsonl, write_jsonl
from shadow.trace.record import HttpRequest, HttpResponse, TraceRecord
from tests.shadow.replay.fakes import T0

NOWHERE = "http://127.0.0.1:9"
PRICED = PricingTable(DEFAULT_PRICES)
NOTHING_PRICED = PricingTable({"some-other-model": ModelPrice(input=1.0, output=1.0)})


def chat_file(tmp_path: Path, n: int, model: str | None = "shadow-large") -> str:
    """A JSONL file of ``n`` chat requests asking for ``model`` (None: naming no model)."""
    body: dict[str, object] = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    if model is not None:
        body["model"] = model
    records = [
        TraceRecord(
            trace_id=f"t{i:03d}",
            captured_at=T0 + i * 1_000_000,
            request=HttpRequest(method="POST", path="/v1/chat/completions", body=json.dumps(body)),
            response=HttpResponse(status=200, body='{"choices": []}'),
        )
        for i in range(n)
    ]
    path = tmp_path / "traces.jsonl"
    write_jsonl(path, records)
    return str(path)


def replay_job(
    tmp_path: Path, source: str, url: str, pricing: PricingTable, **options: object
) -> ReplayJob:
    """A replay of ``source`` to ``url`` on both arms under a budget of $0.0001."""
    arm = ArmConfig(url=url, timeout_s=10)
    return ReplayJob(
        source=source,
        out=str(tmp_path / "run.duckdb"),
        arms={"baseline": arm, "candidate": options.pop("candidate", arm)},  # type: ignore[dict-item]
        pricing=pricing,
        safety=SafetyConfig(max_cost_usd=0.0001),
        pacing=Pacing(speed=100),
        run_id="b",
        **options,  # type: ignore[arg-type]
    )


async def test_200_sends_to_an_unpriced_model_under_a_cap_are_refused(tmp_path: Path) -> None:
    """The issue's case: a $0.0001 cap and 200 requests for gpt-9, which has no price.

    Nothing is sent (nothing listens at the arms' address anyway) and no run is recorded.
    """
    job = replay_job(tmp_path, chat_file(tmp_path, 200, "gpt-9"), NOWHERE, PRICED)
    with pytest.raises(UnpricedModelsError) as caught:
        await run_replay(job)
    assert caught.value.unpriced == {"baseline": {"gpt-9": 200}, "candidate": {"gpt-9": 200}}
    message = str(caught.value)
    assert "arm baseline uses model 'gpt-9' (200 requests)" in message
    assert '[pricing."gpt-9"]' in message
    assert not (tmp_path / "run.duckdb").exists()


async def test_the_arms_model_override_is_what_is_checked(tmp_path: Path) -> None:
    """The candidate's body_overrides.model replaces the captured one; only it is unpriced."""
    candidate = ArmConfig(url=NOWHERE, body_overrides={"model": "cheap-v2"})
    job = replay_job(tmp_path, chat_file(tmp_path, 3), NOWHERE, PRICED, candidate=candidate)
    with pytest.raises(UnpricedModelsError) as caught:
        await run_replay(job)
    assert caught.value.unpriced == {"candidate": {"cheap-v2": 3}}


def test_planned_models_and_check_priced_by_hand(tmp_path: Path) -> None:
    """Each arm's models with their request counts; a request naming no model is not planned."""
    records = list(read_jsonl(chat_file(tmp_path, 2, "shadow-small")))
    records += list(read_jsonl(chat_file(tmp_path, 1, None)))
    arms = {"baseline": ArmConfig(), "candidate": ArmConfig(body_overrides={"model": "x"})}
    planned = planned_models(records, arms)
    assert planned == {"baseline": {"shadow-small": 2}, "candidate": {"x": 3}}
    with pytest.raises(UnpricedModelsError, match="arm candidate uses model 'x' \\(3 requests\\)"):
        check_priced(PRICED, planned)
    check_priced(PRICED, {"baseline": planned["baseline"]})  # priced: no error


async def test_allow_unpriced_starts_and_counts_the_unpriced_attempts(
    mock_large: MockLLMServer, tmp_path: Path
) -> None:
    """With allow_unpriced the run goes on; unpriced attempts are counted and cost NULL."""
    source = chat_file(tmp_path, 4, "gpt-9")
    job = replay_job(tmp_path, source, mock_large.url, NOTHING_PRICED, allow_unpriced=True)
    outcome = await run_replay(job)
    assert outcome.status == "done"
    assert outcome.summary["unpriced_models"] == {"shadow-large": 8}
    assert outcome.summary["budget_unenforceable"] is None
    arms = outcome.summary["arms"]
    assert isinstance(arms, dict)
    assert arms["candidate"]["unpriced"] == 4
    with duckdb.connect(str(tmp_path / "run.duckdb"), read_only=True) as con:
        rows = con.execute(
            "select count(*), count(cost_usd), min(prompt_tokens) from results"
        ).fetchone()
    assert rows is not None
    assert rows[0] == 8
    assert rows[1] == 0  # unpriced is NULL, never 0
    assert rows[2] > 0


async def test_an_answer_on_an_unpriced_model_stops_a_budgeted_run(
    mock_large: MockLLMServer, tmp_path: Path
) -> None:
    """Requests name no model (nothing to check up front); the answers report shadow-large,
    which has no price: the budget cannot be enforced, so the run stops, budget_exhausted."""
    source = chat_file(tmp_path, 40, None)
    job = replay_job(
        tmp_path, source, mock_large.url, NOTHING_PRICED, replay=ReplayConfig(max_in_flight=1)
    )
    outcome = await run_replay(job)
    assert outcome.status == "budget_exhausted"
    assert outcome.summary["budget_unenforceable"] == (
        "cannot enforce the budget: model 'shadow-large' has no price"
    )
    with duckdb.connect(str(tmp_path / "run.duckdb"), read_only=True) as con:
        sent = con.execute("select count(*) from results where sent_at is not null").fetchone()
        status = con.execute("select status from runs").fetchone()
    assert sent is not None
    assert sent[0] <= 3  # the first answer stops it; at most the sends already under way
    assert status == ("budget_exhausted",)


async def test_a_mirror_refuses_an_unpriced_candidate_model(tmp_path: Path) -> None:
    """The mirror cannot read ahead, but the candidate's model override is checked up front."""
    job = MirrorJob(
        source=chat_file(tmp_path, 2),
        out=str(tmp_path / "mirror.duckdb"),
        candidate=ArmConfig(url=NOWHERE, body_overrides={"model": "gpt-9"}),
        pricing=PRICED,
        safety=SafetyConfig(max_cost_usd=1.0),
    )
    with pytest.raises(UnpricedModelsError, match="arm candidate uses model 'gpt-9'"):
        await run_mirror(job)


async def test_a_mirror_stops_before_sending_a_record_for_an_unpriced_model(
    tmp_path: Path,
) -> None:
    """A live record asking for a model without a price is never sent under a budget."""
    job = MirrorJob(
        source=chat_file(tmp_path, 3, "gpt-9"),
        out=str(tmp_path / "mirror.duckdb"),
        candidate=ArmConfig(url=NOWHERE, timeout_s=5),
        pricing=PRICED,
        safety=SafetyConfig(max_cost_usd=1.0),
    )
    outcome = await run_mirror(job)
    assert outcome.status == "budget_exhausted"
    assert outcome.stats.arm("candidate").sent == 0
    assert outcome.stats.budget_unenforceable == (
        "cannot enforce the budget: model 'gpt-9' has no price"
    )


def _shadow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shadow", *args], capture_output=True, text=True, timeout=120
    )


def test_the_cli_refuses_an_unpriced_budget_in_one_line(tmp_path: Path) -> None:
    """`shadow replay --max-cost-usd` with an unpriced model: one line naming it, exit 2."""
    source = chat_file(tmp_path, 200, "gpt-9")
    result = _shadow(
        "replay", source, "--baseline", NOWHERE, "--candidate", NOWHERE,
        "--max-cost-usd", "0.0001", "--out", str(tmp_path / "run.duckdb"), "--quiet",
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "shadow: error: --max-cost-usd cannot be enforced: arm baseline uses model 'gpt-9' "
        "(200 requests); arm candidate uses model 'gpt-9' (200 requests), which has no price; "
        'add a price for it (a [pricing."gpt-9"] table in --config, or --pricing FILE), '
        "or pass --allow-unpriced to start anyway"
    )


def test_a_budget_stop_exits_1(mock_large: MockLLMServer, tmp_path: Path) -> None:
    """A replay stopped by its (priced) budget exits 1, its run budget_exhausted."""
    out = tmp_path / "run.duckdb"
    result = _shadow(
        "replay", chat_file(tmp_path, 30), "--baseline", mock_large.url, "--candidate",
        mock_large.url, "--speed", "100", "--max-in-flight", "1", "--max-cost-usd", "0.000001",
        "--out", str(out), "--json",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["budget_exhausted"] is True
    with duckdb.connect(str(out), read_only=True) as con:
        assert con.execute("select status from runs").fetchall() == [("budget_exhausted",)]
