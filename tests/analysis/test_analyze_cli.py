"""`shadow analyze` on a generated run: figures, deltas and their intervals, formats, errors."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shadow.results.rows import ResultRow
from shadow.results.store import ResultsStore


@pytest.fixture(scope="module")
def run_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """A run whose candidate is 30% slower on the 'hard' intent and the same elsewhere."""
    path = tmp_path_factory.mktemp("analyze") / "run.duckdb"
    rng = np.random.default_rng(7)
    rows = []
    latencies: dict[str, np.ndarray] = {}
    for intent, slowdown in (("easy", 1.0), ("hard", 1.3)):
        for arm, factor in (("baseline", 1.0), ("candidate", slowdown)):
            values = rng.lognormal(mean=6.0, sigma=0.4, size=400) * factor
            latencies[f"{intent}/{arm}"] = values
            for i, latency in enumerate(values):
                rows.append(
                    ResultRow(
                        run_id="r1",
                        trace_id=f"{intent}-{i}",
                        arm=arm,
                        attempt=0,
                        slices={"intent": intent},
                        scheduled_at=1.0,
                        sent_at=1.0,
                        latency_ms=float(latency),
                        service_ms=float(latency),
                        status=200,
                        ok=i % 20 != 0,
                        model="m",
                        prompt_tokens=100,
                        completion_tokens=10,
                        cost_usd=0.001 * factor,
                    )
                )
    with ResultsStore.open(path) as store:
        store.start_run("r1", source="test", config={}, arms=["baseline", "candidate"])
        store.write(rows)
        store.finish_run("r1", status="done", counts={})
    return path, latencies


def shadow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shadow", "analyze", *args,
         *(() if "--embedder" in args else ("--embedder", "lexical"))],
        capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def test_json_figures_match_an_independent_numpy_computation(
    run_file: tuple[Path, dict[str, np.ndarray]],
) -> None:
    """Percentiles per slice and arm equal numpy's linear quantiles over the successful
    requests (one in 20 fails); deltas find the slowdown."""
    path, latencies = run_file
    result = shadow(str(path), "--by", "intent", "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["run_id"] == "r1"
    assert report["baseline_arm"] == "baseline"
    groups = {(g["slice"]["intent"], g["arm"]): g for g in report["groups"]}
    for (intent, arm), group in groups.items():
        values = latencies[f"{intent}/{arm}"]
        values = values[np.arange(values.size) % 20 != 0]  # failed requests have no latency
        for q in (50, 95, 99):
            assert group[f"latency_p{q}_ms"] == pytest.approx(np.percentile(values, q), rel=1e-9)
        assert group["n"] == 400
        assert group["ok_rate"] == pytest.approx(380 / 400)
        assert group["cost_per_success_usd"] == pytest.approx(group["cost_usd"] / 380)
    hard = groups[("hard", "candidate")]["delta"]["latency_p50_ms"]
    easy = groups[("easy", "candidate")]["delta"]["latency_p50_ms"]
    ok = np.arange(400) % 20 != 0
    true_hard = (
        np.percentile(latencies["hard/candidate"][ok], 50)
        / np.percentile(latencies["hard/baseline"][ok], 50)
        - 1
    )
    assert hard["change"] == pytest.approx(true_hard)
    assert hard["lo"] > 0.1  # the interval excludes "no change": a real regression
    assert easy["lo"] < 0 < easy["hi"]  # same distribution: the interval spans zero
    assert "delta" not in groups[("hard", "baseline")]
    cost = groups[("hard", "candidate")]["delta"]["cost_per_success_usd"]
    assert cost["change"] == pytest.approx(0.3)


def test_table_and_csv_formats(run_file: tuple[Path, dict[str, np.ndarray]]) -> None:
    """The default table names the run; CSV has one row per group with delta columns."""
    path, _ = run_file
    table = shadow(str(path))
    assert table.returncode == 0, table.stderr
    assert "run r1" in table.stdout
    data = shadow(str(path), "--by", "intent", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(data.stdout)))
    assert len(rows) == 4
    assert {"intent", "arm", "latency_p99_ms", "delta_latency_p99_ms_lo"} <= set(rows[0])


def test_repricing_changes_cost_per_success(
    run_file: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    """--pricing recomputes cost from tokens: 100 in + 10 out at 1 and 2 USD per million."""
    path, _ = run_file
    prices = tmp_path / "prices.toml"
    prices.write_text("[pricing.m]\ninput = 1.0\noutput = 2.0\n")
    result = shadow(str(path), "--format", "json", "--pricing", str(prices))
    assert result.returncode == 0, result.stderr
    baseline = next(g for g in json.loads(result.stdout)["groups"] if g["arm"] == "baseline")
    assert baseline["cost_usd"] == pytest.approx(800 * (100 * 1.0 + 10 * 2.0) / 1e6)


def test_a_file_that_is_not_a_results_store_is_exit_2(tmp_path: Path) -> None:
    """A missing file or a text file gives one line and exit 2."""
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    for target in (tmp_path / "missing.duckdb", text):
        result = shadow(str(target))
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1
