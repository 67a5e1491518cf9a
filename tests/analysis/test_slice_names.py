"""`--by` an unknown slice: one line naming the run's slices, exit 2 (analyze, report, library)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from analysis.analyze import analyze
from analysis.run import open_run
from shadow.errors import UsageError
from shadow.results.rows import ResultRow
from shadow.results.store import ResultsStore


@pytest.fixture(scope="module")
def run_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run with slices intent and size (size on some rows only)."""
    path = tmp_path_factory.mktemp("slices") / "run.duckdb"
    rows = [
        ResultRow(run_id="r", trace_id=f"t{i}", arm=arm, scheduled_at=0.0, sent_at=0.0,
                  latency_ms=100.0 + i, status=200, ok=True, model="m", output_text="a",
                  slices={"intent": "x", **({"size": "s"} if i % 2 else {})})
        for i in range(6)
        for arm in ("baseline", "candidate")
    ]  # fmt: skip
    with ResultsStore.open(path) as store:
        store.start_run("r", source="t", config={}, arms=["baseline", "candidate"])
        store.write(rows)
    return path


def test_the_library_names_the_runs_slices(run_file: Path) -> None:
    """slice_names lists every key any attempt has; an unknown one is a UsageError on by."""
    run = open_run(run_file)
    try:
        assert run.slice_names() == ["intent", "size"]
        run.check_slices(["size", "intent"])
        with pytest.raises(UsageError, match=r"'nosuch'.*its slices are: intent, size") as err:
            run.summary(["intent", "nosuch"])
        assert err.value.setting == "by"
        with pytest.raises(UsageError, match=r"'nosuch'.*its slices are: intent, size"):
            analyze(run, ["nosuch"])  # the library call checks too, not only the CLI
    finally:
        run.close()


@pytest.mark.parametrize("command", ["analyze", "report"])
def test_by_an_unknown_slice_is_one_line_and_exit_2(
    run_file: Path, tmp_path: Path, command: str
) -> None:
    """analyze and report refuse a --by slice the run lacks instead of grouping under (none)."""
    extra = ["--out", str(tmp_path / "r.html")] if command == "report" else []
    result = subprocess.run(
        [sys.executable, "-m", "shadow", command, str(run_file), "--by", "intnt",
         "--embedder", "lexical", *extra],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        "shadow: error: --by has 'intnt', a slice run r does not have; its slices are: intent, size"
    ]
    assert not (tmp_path / "r.html").exists()
