"""The faster paths of ``analyze`` give the figures of the plain definitions: the requests view
of a run without retries, the banded weighted quantiles, the costs read in the attempts pass,
the one scan of a run without retries and the counts per model and error class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analysis import aggregates
from analysis.aggregates import Slo, group_figures
from analysis.cost import group_costs, unpriced
from analysis.paired import _weighted_quantiles, poisson_weights
from analysis.run import Run, open_run
from analysis.sql import REQUESTS_SQL
from shadow.replay.budget import NO_MODEL
from shadow.results.rows import ResultRow
from shadow.results.store import ResultsStore


def _row(trace: str, arm: str, **fields: Any) -> ResultRow:
    values: dict[str, Any] = {
        "run_id": "r", "trace_id": trace, "arm": arm, "scheduled_at": 100.0, "sent_at": 100.01,
        "latency_ms": 120.0, "ttft_ms": 30.0, "status": 200, "ok": True, "model": "m",
        "prompt_tokens": 10, "completion_tokens": 12, "cost_usd": 0.001,
        "slices": {"tenant": "a" if trace < "t5" else "b"},
    }  # fmt: skip
    values.update(fields)
    return ResultRow(**values)


def _run(path: Path, rows: list[ResultRow]) -> Run:
    with ResultsStore.open(path) as store:
        store.start_run("r", source="test", config={}, arms=["baseline", "candidate"])
        store.write(rows)
        store.finish_run("r", status="done", counts={})
    return open_run(path)


def _unretried_rows() -> list[ResultRow]:
    rows = []
    for i in range(10):
        rows.append(_row(f"t{i}", "baseline", latency_ms=100.0 + i))
        fields: dict[str, Any] = {"latency_ms": 90.0 + 3 * i}
        if i == 2:
            fields = {"ok": False, "status": 500, "completion_tokens": 0}
        elif i == 3:
            fields = {"ok": None, "status": None, "error": "timeout", "latency_ms": None}
        elif i == 4:
            fields = {"error": "skipped_budget", "ok": False, "latency_ms": None, "cost_usd": None}
        elif i == 5:
            fields = {"cost_usd": None, "model": None}  # unpriced, no model name
        rows.append(_row(f"t{i}", "candidate", **fields))
    return rows


def test_requests_of_a_run_without_retries_are_those_of_the_full_definition(
    tmp_path: Path,
) -> None:
    """The view a run without retries gets (no join) has exactly the rows of REQUESTS_SQL."""
    run = _run(tmp_path / "r.duckdb", _unretried_rows())
    order = "ORDER BY trace_id, arm"
    fast = run.records(f"SELECT * EXCLUDE (slices) FROM requests {order}")
    full = run.records(f"SELECT * EXCLUDE (slices) FROM ({REQUESTS_SQL}) {order}")
    assert len(fast) == 20
    assert fast == full


def test_a_run_with_a_retry_keeps_the_full_definition(tmp_path: Path) -> None:
    rows = [*_unretried_rows(), _row("t2", "candidate", attempt=1, latency_ms=50.0)]
    run = _run(tmp_path / "r.duckdb", rows)
    found = run.records(
        "SELECT ok, latency_ms FROM requests WHERE trace_id = 't2' AND arm = 'candidate'"
    )
    # One request: the failed attempt's 120 ms then the retry's 50 ms.
    assert found == [{"ok": True, "latency_ms": 170.0}]


def test_costs_read_with_the_attempt_figures_match_the_cost_module(tmp_path: Path) -> None:
    run = _run(tmp_path / "r.duckdb", _unretried_rows())
    figures = group_figures(run, ["tenant"], Slo())
    expected = {(*c.group, c.arm): c for c in group_costs(run, ["tenant"])}
    assert {key: f.cost for key, f in figures.items()} == expected
    missing: dict[tuple[str, ...], dict[str, int]] = {}
    for found in unpriced(run, ["tenant"]):
        missing.setdefault((*found.group, found.arm), {})[found.model] = found.attempts
    assert {key: f.unpriced for key, f in figures.items() if f.unpriced} == missing
    assert missing  # the run has an unpriced attempt: the comparison means something


def _figures(run: Run) -> dict[tuple[str, ...], Any]:
    figures = group_figures(run, ["tenant"], Slo(latency_ms=150.0))
    return {
        key: (f.summary, f.attempt, f.extra, f.cost, f.unpriced,
              {c: np.nan_to_num(np.asarray(v, dtype=float), nan=-1.0).tolist()
               if c != "trace" else v.tolist() for c, v in f.sample.items()})
        for key, f in figures.items()
    }  # fmt: skip


def test_one_scan_with_counts_gives_the_figures_of_two_passes_with_histograms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run without retries is read in one scan that counts each model and error class; the
    figures are those of the two passes (requests, then attempts) with DuckDB histograms."""
    run = _run(tmp_path / "r.duckdb", _unretried_rows())
    fast = _figures(run)
    assert fast[("a", "candidate")][2]["errors"] == {
        "http_500": 1,
        "skipped_budget": 1,
        "timeout": 1,
    }
    assert fast[("b", "candidate")][2]["models"] == {"m": 4}  # t5 reported no model
    assert fast[("b", "candidate")][4] == {NO_MODEL: 1}
    monkeypatch.setattr(aggregates, "_MAX_COUNTED", 0)  # histograms instead of counts
    records = run.records

    def as_if_retried(query: str, params: Any = None) -> list[dict[str, Any]]:
        if "attempt > 0 LIMIT 1" in query:  # the check that picks the one scan
            return [{"one": 1}]
        return records(query, params)

    monkeypatch.setattr(run, "records", as_if_retried)
    assert _figures(run) == fast


def _plain_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> np.ndarray:
    """The definition: the smallest value whose cumulative weight reaches q of the total."""
    out = np.full(weights.shape[1], np.nan)
    for j in range(weights.shape[1]):
        column = weights[:, j].astype(np.int64)
        total = int(column.sum())
        if total:
            target = max(int(np.ceil(q * total)), 1)
            out[j] = values[min(int(np.searchsorted(np.cumsum(column), target)), values.size - 1)]
    return out


@pytest.mark.parametrize("size", [1, 2, 7, 300, 5_000])
def test_banded_weighted_quantiles_are_the_definition(size: int) -> None:
    rng = np.random.default_rng(size)
    weights = poisson_weights(60, size, seed=size)
    if size > 10:  # columns whose rank leaves the band, and one of zero weight
        weights[: size // 2, 0] = 0
        weights[size // 2 :, 1] = 0
        weights[:, 2] = 0
        weights[0, 3] = 255
    values = np.sort(rng.lognormal(size=size))
    wanted = {"p01": 0.01, "p50": 0.5, "p95": 0.95, "p99": 0.99}
    found = _weighted_quantiles(values, weights, wanted)
    for name, q in wanted.items():
        np.testing.assert_array_equal(found[name], _plain_quantile(values, weights, q))
