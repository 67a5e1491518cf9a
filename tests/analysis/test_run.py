"""analysis.run: every summary figure against an independent numpy recomputation."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from analysis.run import Run, open_run
from analysis.sql import NO_SLICE
from shadow.config import ModelPrice
from shadow.errors import UsageError
from shadow.replay.pricing import PricingTable
from shadow.results.parquet import ParquetResultsWriter
from shadow.results.rows import ResultRow
from shadow.results.store import ResultsStore

RUN = "run-new"
OLD = "run-old"


def _rows(n_traces: int = 400, seed: int = 1) -> list[ResultRow]:
    """Two arms, two tenants plus rows without one, failures, NULL latencies and paid retries."""
    rng = np.random.default_rng(seed)
    rows: list[ResultRow] = []
    for arm, scale in (("baseline", 1.0), ("candidate", 1.2)):
        latency = rng.lognormal(6.0, 0.5, n_traces) * scale
        completion = rng.integers(0, 300, n_traces)
        prompt = rng.integers(10, 2000, n_traces)
        for i in range(n_traces):
            slices = {"intent": "code"} if i % 10 == 0 else {"tenant": ("acme", "globex")[i % 2]}
            unsent = i % 37 == 5
            failed = unsent or i % 13 == 3
            lat = None if unsent else float(latency[i])
            ttft = None if lat is None or i % 11 == 0 else lat * 0.25
            model = "mystery-model" if i % 17 == 0 else "shadow-large"
            common: dict[str, Any] = {
                "run_id": RUN,
                "trace_id": f"t-{i:04d}",
                "arm": arm,
                "slices": slices,
                "scheduled_at": 1_700_000_000.0 + i,
                "model": model,
            }
            rows.append(
                ResultRow(
                    **common,
                    attempt=0,
                    latency_ms=lat,
                    ttft_ms=ttft,
                    ok=not failed,
                    status=None if unsent else (500 if failed else 200),
                    prompt_tokens=None if unsent else int(prompt[i]),
                    completion_tokens=None if unsent else int(completion[i]),
                    cached_tokens=None if unsent else int(prompt[i]) // 4,
                    cost_usd=None if unsent else 0.001 + i * 1e-6,
                    output_text=f"{arm} answer {i}",
                )
            )
            if failed and not unsent:  # a retry that succeeds and costs again
                rows.append(
                    ResultRow(
                        **common,
                        attempt=1,
                        latency_ms=lat * 0.9 if lat is not None else None,
                        ttft_ms=None,
                        ok=True,
                        status=200,
                        prompt_tokens=int(prompt[i]),
                        completion_tokens=int(completion[i]),
                        cached_tokens=0,
                        cost_usd=0.002,
                        output_text=f"{arm} retry {i}",
                    )
                )
    return rows


def _old_rows() -> list[ResultRow]:
    return [
        ResultRow(
            run_id=OLD,
            trace_id="t-0000",
            arm="baseline",
            scheduled_at=1.0,
            latency_ms=1e9,
            ok=True,
            cost_usd=99.0,
        )
    ]


def _fill(sink: ResultsStore | ParquetResultsWriter, rows: Sequence[ResultRow]) -> None:
    for run_id, source in ((OLD, "old.jsonl"), (RUN, "new.jsonl")):
        sink.start_run(run_id, source=source, config={}, arms=["baseline", "candidate"])
        sink.write([r for r in rows if r.run_id == run_id])
        sink.finish_run(run_id, status="done", counts={"n": 1})


@pytest.fixture(scope="module")
def rows() -> list[ResultRow]:
    """The generated rows of the latest run plus one row of an older run."""
    return _rows() + _old_rows()


@pytest.fixture(scope="module")
def duckdb_path(tmp_path_factory: pytest.TempPathFactory, rows: list[ResultRow]) -> Path:
    """A DuckDB results file holding both runs."""
    path = tmp_path_factory.mktemp("store") / "run.duckdb"
    with ResultsStore.open(path) as store:
        _fill(store, rows)
    return path


@pytest.fixture(scope="module")
def parquet_dir(tmp_path_factory: pytest.TempPathFactory, rows: list[ResultRow]) -> Path:
    """A Parquet results directory holding the same rows."""
    path = tmp_path_factory.mktemp("parts") / "run"
    with ParquetResultsWriter(path, writer_id="w1") as writer:
        _fill(writer, rows)
    return path


@pytest.fixture
def run(duckdb_path: Path) -> Iterator[Run]:
    """The latest run of the DuckDB file."""
    opened = open_run(duckdb_path)
    yield opened
    opened.close()


def _q(values: list[float], q: float) -> float | None:
    return float(np.quantile(np.array(values), q)) if values else None


def _expected(
    rows: Sequence[ResultRow], by: Sequence[str]
) -> dict[tuple[str, ...], dict[str, Any]]:
    """The per-request summary recomputed from the rows in Python and numpy.

    A request is a trace on an arm with all its attempts; its latency (TTFT) is the failed
    attempts' latencies plus the successful attempt's latency (TTFT), successful requests only.
    """
    groups: dict[tuple[str, ...], dict[str, list[ResultRow]]] = {}
    for r in rows:
        if r.run_id != RUN:
            continue
        key = (*(r.slices.get(name, NO_SLICE) for name in by), r.arm)
        groups.setdefault(key, {}).setdefault(r.trace_id, []).append(r)
    out = {}
    for key, requests in groups.items():
        lat: list[float] = []
        ttft: list[float] = []
        tpot: list[float] = []
        ok_requests = 0
        attempts = [r for members in requests.values() for r in members]
        for members in requests.values():
            good = [r for r in members if r.ok]
            if not good:
                continue
            ok_requests += 1
            final = good[0]
            before = sum(r.latency_ms or 0.0 for r in members if not r.ok)
            if final.latency_ms is not None:
                lat.append(before + final.latency_ms)
            if final.ttft_ms is not None:
                ttft.append(before + final.ttft_ms)
            if (
                final.completion_tokens is not None
                and final.completion_tokens > 1
                and final.ttft_ms is not None
                and final.latency_ms is not None
            ):
                tpot.append((final.latency_ms - final.ttft_ms) / (final.completion_tokens - 1))
        cost = sum(r.cost_usd for r in attempts if r.cost_usd is not None)
        n = len(requests)
        tokens = sum((r.prompt_tokens or 0) + (r.completion_tokens or 0) for r in attempts)
        out[key] = {
            "n": n,
            "ok_rate": ok_requests / n,
            "skipped": 0,
            "attempts_per_request": len(attempts) / n,
            "attempt_ok_rate": sum(r.ok for r in attempts) / len(attempts),
            "latency_p50_ms": _q(lat, 0.5),
            "latency_p95_ms": _q(lat, 0.95),
            "latency_p99_ms": _q(lat, 0.99),
            "ttft_p50_ms": _q(ttft, 0.5),
            "ttft_p95_ms": _q(ttft, 0.95),
            "ttft_p99_ms": _q(ttft, 0.99),
            "tpot_p50_ms": _q(tpot, 0.5),
            "prompt_tokens": sum(r.prompt_tokens or 0 for r in attempts),
            "completion_tokens": sum(r.completion_tokens or 0 for r in attempts),
            "tokens_per_request": tokens / n,
            "cost_usd": cost,
            "cost_per_request_usd": cost / n,
            "cost_per_success_usd": cost / ok_requests if ok_requests else None,
        }
    return out


def _check(
    frame: pl.DataFrame, expected: dict[tuple[str, ...], dict[str, Any]], by: Sequence[str]
) -> None:
    assert frame.height == len(expected)
    for row in frame.iter_rows(named=True):
        key = (*(row[name] for name in by), row["arm"])
        want = expected[key]
        for name, value in want.items():
            if value is None:
                assert row[name] is None, (key, name)
            else:
                assert row[name] == pytest.approx(value, rel=1e-9), (key, name)


def test_open_run_defaults_to_the_latest_run(run: Run) -> None:
    """Without a run_id, the most recently started run is opened."""
    assert run.run_id == RUN


def test_summary_by_arm_matches_numpy(run: Run, rows: list[ResultRow]) -> None:
    """Every figure of the per-arm summary equals its numpy recomputation, per request."""
    frame = run.summary()
    assert frame.columns[:2] == ["arm", "n"]
    assert frame["arm"].to_list() == ["baseline", "candidate"]
    _check(frame, _expected(rows, ()), ())


def test_summary_by_tenant_groups_missing_slices_as_none(run: Run, rows: list[ResultRow]) -> None:
    """by=['tenant'] groups per tenant and arm, rows lacking the slice under '(none)'."""
    frame = run.summary(by=["tenant"])
    assert frame.columns[:2] == ["tenant", "arm"]
    assert sorted(set(frame["tenant"].to_list())) == [NO_SLICE, "acme", "globex"]
    _check(frame, _expected(rows, ["tenant"]), ["tenant"])


def test_cost_per_success_by_hand(tmp_path: Path) -> None:
    """Cost per success is the cost of every attempt, failed retries too, over the requests that
    succeeded; n and the ok rate count requests (trace a failed, then succeeded on retry)."""
    common: dict[str, Any] = {"run_id": RUN, "arm": "baseline", "scheduled_at": 0.0}
    with ResultsStore.open(tmp_path / "r.duckdb") as store:
        store.write(
            [
                ResultRow(**common, trace_id="a", attempt=0, ok=False, cost_usd=0.25),
                ResultRow(**common, trace_id="a", attempt=1, ok=True, cost_usd=0.5),
                ResultRow(**common, trace_id="b", attempt=0, ok=True, cost_usd=1.0),
                ResultRow(**common, trace_id="c", attempt=0, ok=False, cost_usd=None),
                ResultRow(
                    run_id=RUN,
                    arm="candidate",
                    scheduled_at=0.0,
                    trace_id="a",
                    ok=False,
                    cost_usd=3.0,
                ),
            ]
        )
    run = open_run(tmp_path / "r.duckdb")
    frame = run.summary()
    base, cand = frame.row(0, named=True), frame.row(1, named=True)
    assert base["n"] == 3
    assert base["cost_usd"] == pytest.approx(1.75)
    assert base["cost_per_success_usd"] == pytest.approx(1.75 / 2)
    assert base["ok_rate"] == pytest.approx(2 / 3)
    assert base["attempt_ok_rate"] == pytest.approx(0.5)
    assert base["attempts_per_request"] == pytest.approx(4 / 3)
    assert base["latency_p50_ms"] is None
    assert cand["cost_per_success_usd"] is None


def test_reprice_recomputes_cost_from_tokens(run: Run, rows: list[ResultRow]) -> None:
    """Repricing charges tokens per million by kind; a model without a price gets NULL."""
    table = PricingTable({"shadow-large": ModelPrice(input=2.0, output=8.0, cached_input=0.5)})
    repriced = run.reprice(table)
    try:
        assert repriced.unknown_models == frozenset({"mystery-model"})
        got = repriced.sql("SELECT trace_id, arm, attempt, cost_usd FROM run_results ORDER BY ALL")
        want = {}
        for r in rows:
            if r.run_id != RUN:
                continue
            cost = None
            if r.model == "shadow-large":
                prompt, cached = r.prompt_tokens or 0, r.cached_tokens or 0
                cost = (
                    (prompt - cached) * 2.0 + cached * 0.5 + (r.completion_tokens or 0) * 8.0
                ) / 1e6
            want[r.trace_id, r.arm, r.attempt] = cost
        assert got.height == len(want)
        for trace_id, arm, attempt, cost in got.iter_rows():
            expected = want[trace_id, arm, attempt]
            assert (cost is None) == (expected is None)
            if expected is not None:
                assert cost == pytest.approx(expected, rel=1e-12)
        total = sum(c for c in want.values() if c is not None)
        assert repriced.summary()["cost_usd"].sum() == pytest.approx(total)
        assert run.summary()["cost_usd"].sum() != pytest.approx(total)
    finally:
        repriced.close()


def test_parquet_directory_gives_the_same_summary(run: Run, parquet_dir: Path) -> None:
    """The Parquet layout of the same rows summarises to the same frame as the DuckDB file."""
    other = open_run(parquet_dir)
    try:
        assert other.run_id == RUN
        for by in ((), ("tenant",)):
            left, right = run.summary(by), other.summary(by)
            assert left.columns == right.columns
            for a, b in zip(left.iter_rows(), right.iter_rows(), strict=True):
                for x, y in zip(a, b, strict=True):
                    assert (x == y) or (isinstance(x, float) and math.isclose(x, y, rel_tol=1e-12))
    finally:
        other.close()


def test_pairs_hold_first_attempts_of_both_arms(run: Run, rows: list[ResultRow]) -> None:
    """pairs() gives one row per trace with each arm's attempt-0 latency, ok, cost and output."""
    frame = run.pairs()
    assert frame.height == 400
    first = {(r.trace_id, r.arm): r for r in rows if r.run_id == RUN and r.attempt == 0}
    row = frame.row(3, named=True)
    base, cand = first[row["trace_id"], "baseline"], first[row["trace_id"], "candidate"]
    assert row["baseline_latency_ms"] == base.latency_ms
    assert row["candidate_ok"] == cand.ok
    assert row["candidate_output_text"] == cand.output_text
    assert row["baseline_cost_usd"] == base.cost_usd


def test_explicit_older_run_is_isolated(duckdb_path: Path) -> None:
    """Opening the older run by id sees only its own rows."""
    old = open_run(duckdb_path, OLD)
    try:
        frame = old.summary()
        assert frame["n"].to_list() == [1]
        assert frame["latency_p50_ms"].to_list() == [1e9]
    finally:
        old.close()


def test_missing_path_and_unknown_run_are_usage_errors(tmp_path: Path, duckdb_path: Path) -> None:
    """A missing store, a non-results file and an unknown run id raise one-line UsageErrors."""
    with pytest.raises(UsageError, match="does not exist"):
        open_run(tmp_path / "nope.duckdb")
    junk = tmp_path / "junk.duckdb"
    junk.write_text("not a database")
    with pytest.raises(UsageError, match="not a shadow results store"):
        open_run(junk)
    with pytest.raises(UsageError, match="no run 'zzz'") as info:
        open_run(duckdb_path, "zzz")
    assert "\n" not in str(info.value)


def test_summary_refuses_a_slice_named_like_a_column(run: Run) -> None:
    """A slice name that clashes with a summary column is a usage error, not a silent overwrite."""
    with pytest.raises(UsageError, match="arm"):
        run.summary(by=["arm"])
