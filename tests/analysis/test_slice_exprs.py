"""--slice NAME=EXPR: slices computed at analysis time from the stored request, on real stores."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from analysis.analyze import analyze
from analysis.run import Run, open_run
from analysis.slicing import SliceExpr, parse_slice_expr
from analysis.sql import NO_SLICE
from shadow.config import ModelPrice
from shadow.errors import UsageError
from shadow.replay.pricing import PricingTable
from shadow.results.parquet import ParquetResultsWriter
from shadow.results.rows import ResultRow, TraceRow
from shadow.results.store import ResultsStore

RUN = "run-1"
OTHER = "run-0"
N = 60
MESSAGES = "messages=json_array_length(request_body->'messages')"


def _messages(i: int) -> int:
    return 1 + i % 3


def _rows(run_id: str, n: int) -> tuple[list[ResultRow], list[TraceRow]]:
    results, traces = [], []
    for i in range(n):
        trace_id = f"t-{i:03d}"
        body = {
            "model": "shadow-large",
            "messages": [{"role": "user", "content": "x"}] * _messages(i),
            "metadata": {"user": f"u{i % 2}"},
        }
        traces.append(
            TraceRow(
                run_id=run_id,
                trace_id=trace_id,
                captured_at=1_700_000_000_000_000_000 + i,
                service="svc",
                slices={"tenant": "acme", "intent": "code"},
                method="POST",
                path="/v1/chat/completions",
                # one trace has no JSON body at all: its computed slice is NULL
                request_body=None if i == n - 1 else json.dumps(body),
            )
        )
        for arm, scale in (("baseline", 1.0), ("candidate", 1.5)):
            results.append(
                ResultRow(
                    run_id=run_id,
                    trace_id=trace_id,
                    arm=arm,
                    attempt=0,
                    slices={"tenant": "acme", "intent": "code"},
                    scheduled_at=1_700_000_000.0 + i,
                    latency_ms=(100.0 + 10 * _messages(i)) * scale,
                    ttft_ms=20.0,
                    ok=True,
                    status=200,
                    model="shadow-large",
                    prompt_tokens=100,
                    completion_tokens=20,
                    cost_usd=0.001,
                    output_text=f"{arm} {i}",
                )
            )
    return results, traces


def _fill(sink: ResultsStore | ParquetResultsWriter) -> None:
    for run_id, n in ((OTHER, 5), (RUN, N)):
        results, traces = _rows(run_id, n)
        sink.start_run(run_id, source="t.jsonl", config={}, arms=["baseline", "candidate"])
        sink.write(results, traces)
        sink.finish_run(run_id, status="done", counts={"n": n})


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DuckDB results file with two runs whose traces hold their request bodies."""
    path = tmp_path_factory.mktemp("store") / "run.duckdb"
    with ResultsStore.open(path) as sink:
        _fill(sink)
    return path


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Parquet results directory holding the same rows."""
    path = tmp_path_factory.mktemp("parts") / "run"
    with ParquetResultsWriter(path, writer_id="w1") as writer:
        _fill(writer)
    return path


@pytest.fixture
def run(store: Path) -> Iterator[Run]:
    opened = open_run(store, RUN)
    yield opened
    opened.close()


def _counts(run: Run, name: str) -> dict[str, int]:
    frame = run.summary([name])
    return {
        str(row[name]): int(row["n"]) for row in frame.iter_rows(named=True)
        if row["arm"] == "baseline"
    }  # fmt: skip


@pytest.mark.parametrize("layout", ["duckdb", "parquet"])
def test_an_expression_over_the_request_body_becomes_a_slice(
    layout: str, store: Path, parts: Path
) -> None:
    """The number of messages per trace groups the summary; a trace without body is (none)."""
    opened = open_run(store if layout == "duckdb" else parts, RUN)
    try:
        assert opened.add_slices([MESSAGES]) is opened
        expected = {str(k): sum(_messages(i) == k for i in range(N - 1)) for k in (1, 2, 3)}
        assert _counts(opened, "messages") == {**expected, NO_SLICE: 1}
        assert "messages" in opened.slice_names()
        # stored slices are still there, beside the computed one
        assert _counts(opened, "tenant") == {"acme": N}
    finally:
        opened.close()


def test_the_slice_is_per_trace_on_every_arm_and_only_for_the_run(run: Run) -> None:
    """Every attempt of a trace gets its trace's value; another run's traces do not count."""
    run.add_slices([SliceExpr("user", "request_body->>'$.metadata.user'")])
    rows = run.records(
        "SELECT trace_id, arm, slices['user'] AS user FROM run_results ORDER BY trace_id, arm"
    )
    assert len(rows) == 2 * N
    for row in rows:
        i = int(row["trace_id"][2:])
        assert row["user"] == (None if i == N - 1 else f"u{i % 2}")


def test_a_computed_slice_replaces_a_stored_one_and_survives_repricing(run: Run) -> None:
    """A name that is also stored takes the computed value; reprice keeps the computed slices."""
    run.add_slices(["tenant=upper(service)", MESSAGES])
    assert _counts(run, "tenant") == {"SVC": N}
    table = PricingTable({"shadow-large": ModelPrice(input=1.0, output=2.0)})
    repriced = run.reprice(table)
    try:
        assert _counts(repriced, "tenant") == {"SVC": N}
        assert sum(_counts(repriced, "messages").values()) == N
    finally:
        repriced.close()


def test_analyze_groups_and_compares_by_the_computed_slice(run: Run) -> None:
    """analyze by the new slice: one group per value and arm, the candidate's change measured."""
    run.add_slices([MESSAGES])
    result = analyze(run, ["messages"], n_boot=200)
    slices = {(g.slice["messages"], g.arm) for g in result.groups}
    assert {("1", "baseline"), ("3", "candidate"), (NO_SLICE, "baseline")} <= slices


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "messages=json_array_length(nope)",
            r'^slice messages=json_array_length\(nope\): .*"nope"',
        ),
        ("x=1); SELECT (2", r"^slice x=1\); SELECT \(2: "),
        ("x=1 FROM read_csv('/etc/passwd')", r"^slice x=.*: Parser Error"),
        ("f=(SELECT count(*) FROM read_text('/etc/passwd'))", r"^slice f=.*(Permission|Catalog)"),
        ("r=(SELECT count(*) FROM results)", r"^slice r=.*Catalog Error"),
        ("bad=CAST(path AS INTEGER)", r"^slice bad=CAST\(path AS INTEGER\): Conversion Error"),
    ],
)
def test_bad_or_unsafe_expressions_are_one_line_errors_naming_the_slice(
    run: Run, text: str, message: str
) -> None:
    """DuckDB's message, first line only; no file, no other table, no second statement."""
    with pytest.raises(UsageError, match=message) as caught:
        run.add_slices([text])
    assert "\n" not in str(caught.value)
    assert caught.value.setting == "slice"


@pytest.mark.parametrize("text", ["no-equals", "=1", "9x=1", "x=", "a b=1"])
def test_malformed_slice_specs_are_refused(text: str) -> None:
    """NAME=EXPR with a name of letters, digits, '_', '.', '-' (not first) and an expression."""
    with pytest.raises(UsageError, match="give NAME=EXPR"):
        parse_slice_expr(text)


def test_a_name_given_twice_is_refused(run: Run) -> None:
    with pytest.raises(UsageError, match="'m' is given twice"):
        run.add_slices(["m=1", "m=2"])


def test_the_store_is_never_written(store: Path) -> None:
    """The expressions see a copy: the store's bytes are the same after any expression."""
    before = store.read_bytes()
    opened = open_run(store, RUN)
    try:
        opened.add_slices(["p=path", "n=length(request_body)"])
        with pytest.raises(UsageError):
            opened.add_slices(["d=(DELETE FROM traces)"])
    finally:
        opened.close()
    assert store.read_bytes() == before


def _shadow(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shadow", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_analyze_and_gate_take_slice_and_use_it_in_by(store: Path, tmp_path: Path) -> None:
    """--slice on analyze (in --by) and gate (in a rule's by); a bad one exits 2 in one line."""
    out = _shadow(
        "analyze", store, "--run-id", RUN, "--slice", MESSAGES, "--by", "messages",
        "--format", "json", "--embedder", "lexical",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    groups = json.loads(out.stdout)["groups"]
    assert {g["slice"]["messages"] for g in groups} == {"1", "2", "3", NO_SLICE}
    rules = tmp_path / "gates.toml"
    rules.write_text(
        '[[gate]]\nmetric = "latency_p50_ms"\nmax_increase_pct = 1000\nby = ["messages"]\n'
        "min_samples = 5\n"
    )
    gate = _shadow(
        "gate", store, "--run-id", RUN, "--rules", rules, "--slice", MESSAGES,
        "--embedder", "lexical", "--format", "json",
    )  # fmt: skip
    assert gate.returncode == 0, gate.stdout + gate.stderr
    judged = json.loads(gate.stdout)
    assert "messages" in json.dumps(judged)
    without = _shadow("gate", store, "--run-id", RUN, "--rules", rules, "--embedder", "lexical")
    assert without.returncode == 2
    bad = _shadow("analyze", store, "--slice", "m=json_array_length(nope)", "--embedder", "lexical")
    assert bad.returncode == 2
    assert len(bad.stderr.splitlines()) == 1, bad.stderr
    assert bad.stderr.startswith("shadow: error: --slice m=json_array_length(nope): ")
    assert "nope" in bad.stderr


def test_cli_report_takes_slice_in_by(store: Path, tmp_path: Path) -> None:
    """report --slice NAME=EXPR --by NAME writes the page with the computed slice's groups."""
    page = tmp_path / "report.html"
    out = _shadow(
        "report", store, "--run-id", RUN, "--out", page, "--slice", MESSAGES,
        "--by", "messages", "--embedder", "lexical", "--examples", "0",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert page.is_file()
    assert "messages" in page.read_text()
