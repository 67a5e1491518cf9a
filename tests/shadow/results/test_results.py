"""The results store: rows, schema, round trips, idempotent writes, resume, both layouts."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path
from typing import Any

import duckdb
import pytest

import shadow.results
from shadow.errors import AnalysisError, UsageError
from shadow.results.parquet import ParquetResultsWriter
from shadow.results.rows import ResultRow, TraceRow
from shadow.results.schema import END_STATUSES, RESULTS_SCHEMA_VERSION
from shadow.results.store import ResultsStore, open_results
from shadow.results.views import results_relation
from shadow.trace.record import HttpRequest, HttpResponse, Timing, TraceRecord, Usage

RESULT_FIELDS = [f.name for f in dataclasses.fields(ResultRow)]
TRACE_FIELDS = [f.name for f in dataclasses.fields(TraceRow)]


def _row(trace_id: str = "t-1", arm: str = "baseline", **overrides: Any) -> ResultRow:
    fields: dict[str, Any] = {
        "run_id": "run-1",
        "trace_id": trace_id,
        "arm": arm,
        "slices": {"tenant": "acme", "intent": "code"},
        "scheduled_at": 1_700_000_000.25,
        "sent_at": 1_700_000_000.2501,
        "ttft_ms": 120.5,
        "latency_ms": 812.25,
        "service_ms": 812.15,
        "status": 200,
        "ok": True,
        "model": "shadow-large",
        "prompt_tokens": 1469,
        "completion_tokens": 28,
        "cached_tokens": 0,
        "cost_usd": 0.00123,
        "output_text": "def add(a, b):\n    return a + b",
        "chunk_offsets_ms": [120.5, 140.25, 812.0],
    }
    fields.update(overrides)
    return ResultRow(**fields)


def _trace(trace_id: str = "t-1", **overrides: Any) -> TraceRow:
    fields: dict[str, Any] = {
        "run_id": "run-1",
        "trace_id": trace_id,
        "captured_at": 1_700_000_000_000_000_000,
        "service": "chat-api",
        "slices": {"tenant": "acme"},
        "method": "POST",
        "path": "/v1/chat/completions",
        "request_body": '{"messages": []}',
        "production_status": 200,
        "production_latency_ms": 790.0,
        "production_model": "shadow-large",
    }
    fields.update(overrides)
    return TraceRow(**fields)


def _read(path: Path | str, sql: str) -> list[tuple[Any, ...]]:
    """Run ``sql`` over the views results_relation puts on ``path``."""
    with duckdb.connect() as con:
        results_relation(con, path)
        return con.execute(sql).fetchall()


def _read_results(path: Path | str) -> list[ResultRow]:
    rows = _read(path, f"SELECT {', '.join(RESULT_FIELDS)} FROM results ORDER BY ALL")
    return [ResultRow(**dict(zip(RESULT_FIELDS, row, strict=True))) for row in rows]


# --- the DuckDB file ---------------------------------------------------------------------------


def test_open_creates_the_schema_and_marks_the_file_as_a_results_store(tmp_path: Path) -> None:
    """A new file gets runs, traces, results and a meta row holding schema_version 1."""
    path = tmp_path / "run.duckdb"
    ResultsStore.open(path).close()
    with duckdb.connect(str(path), read_only=True) as con:
        tables = {
            name for (name,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        }
        version = con.execute("SELECT schema_version FROM meta").fetchall()
        columns = con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'results'"
        ).fetchall()
    assert {"meta", "runs", "traces", "results"} <= tables
    assert version == [(RESULTS_SCHEMA_VERSION,)]
    assert dict(columns)["slices"] == "MAP(VARCHAR, VARCHAR)"
    assert dict(columns)["chunk_offsets_ms"] == "DOUBLE[]"
    assert [name for name, _ in columns] == RESULT_FIELDS


def test_rows_round_trip_with_maps_nulls_lists_and_unicode(tmp_path: Path) -> None:
    """Every field comes back as written: slices, NULLs, chunk offsets and non-ASCII text."""
    path = tmp_path / "run.duckdb"
    written = [
        _row("t-1", output_text="naïve café ✓ 你好 🚀", chunk_offsets_ms=[0.125, 1e-3, 99999.5]),
        _row(
            "t-1",
            "candidate",
            attempt=2,
            slices={},
            sent_at=None,
            ttft_ms=None,
            latency_ms=None,
            service_ms=None,
            status=None,
            ok=False,
            error="timeout",
            model=None,
            prompt_tokens=None,
            completion_tokens=None,
            cached_tokens=None,
            cost_usd=None,
            output_text=None,
            chunk_offsets_ms=None,
        ),
        _row("t-2", chunk_offsets_ms=[], slices={"route": "a'b\"c", "emoji": "🙂"}),
    ]
    traces = [_trace("t-1"), _trace("t-2", request_body=None, production_status=None)]
    with ResultsStore.open(path) as store:
        store.write(written, traces)
    assert _read_results(path) == sorted(written, key=lambda r: (r.trace_id, r.arm))
    rows = _read(path, f"SELECT {', '.join(TRACE_FIELDS)} FROM traces ORDER BY trace_id")
    assert [TraceRow(**dict(zip(TRACE_FIELDS, row, strict=True))) for row in rows] == traces


@pytest.mark.parametrize("layout", ["run.duckdb", "out/"])
def test_text_with_lone_surrogates_is_stored_with_replacement_characters(
    tmp_path: Path, layout: str
) -> None:
    """Output decoded from JSON escapes such as \\ud83d is kept, with U+FFFD for the bad unit."""
    path = f"{tmp_path}/{layout}"
    sink = open_results(path)
    sink.write([_row("t-1", output_text=json.loads('"cut emoji \\ud83d!"')), _row("t-2")])
    sink.close()
    assert _read(path, "SELECT output_text FROM results ORDER BY trace_id")[0] == (
        "cut emoji \ufffd!",
    )


def test_rewriting_a_key_replaces_the_row_instead_of_duplicating_it(tmp_path: Path) -> None:
    """Writing (run_id, trace_id, arm, attempt) again replaces the row, also within one batch."""
    path = tmp_path / "run.duckdb"
    with ResultsStore.open(path) as store:
        store.write([_row("t-1"), _row("t-2")], [_trace("t-1")])
        store.write([_row("t-1", latency_ms=5.0, output_text="again")], [_trace("t-1")])
        store.write([_row("t-3", latency_ms=1.0), _row("t-3", latency_ms=2.0)])
        store.write([_row("t-2", attempt=1, ok=False, error="http_5xx")])
    rows = _read(
        path, "SELECT trace_id, attempt, latency_ms, output_text FROM results ORDER BY ALL"
    )
    assert rows == [
        ("t-1", 0, 5.0, "again"),
        ("t-2", 0, 812.25, "def add(a, b):\n    return a + b"),
        ("t-2", 1, 812.25, "def add(a, b):\n    return a + b"),
        ("t-3", 0, 2.0, "def add(a, b):\n    return a + b"),
    ]
    assert _read(path, "SELECT count(*) FROM traces") == [(1,)]


def test_done_keys_are_the_trace_arm_pairs_of_that_run(tmp_path: Path) -> None:
    """done_keys lists each (trace_id, arm) of the run once, whatever its attempts."""
    with ResultsStore.open(tmp_path / "run.duckdb") as store:
        store.write(
            [
                _row("t-1", "baseline"),
                _row("t-1", "candidate", attempt=0, ok=False, error="timeout"),
                _row("t-1", "candidate", attempt=1),
                _row("t-2", "baseline"),
                _row("t-9", "baseline", run_id="run-2"),
            ]
        )
        assert store.done_keys("run-1") == {
            ("t-1", "baseline"),
            ("t-1", "candidate"),
            ("t-2", "baseline"),
        }
        assert store.done_keys("run-3") == set()


def test_start_run_twice_keeps_started_at_and_runs_again(tmp_path: Path) -> None:
    """Resuming a run keeps its first start time and sets it running with no end or counts."""
    with ResultsStore.open(tmp_path / "run.duckdb") as store:
        store.start_run("run-1", source="t.jsonl", config={"speed": 1.0}, arms=["baseline"])
        first = store.runs()[0]
        store.finish_run("run-1", status="interrupted", counts={"sent": 10})
        store.start_run(
            "run-1", source="t.jsonl", config={"speed": 2.0}, arms=["baseline", "candidate"]
        )
        (again,) = store.runs()
    assert again["started_at"] == first["started_at"]
    assert again["started_at"].tzinfo is not None
    assert (again["status"], again["ended_at"], again["counts"]) == ("running", None, None)
    assert again["config"] == {"speed": 2.0}
    assert again["arms"] == ["baseline", "candidate"]


def test_finish_run_records_status_counts_and_the_latest_run(tmp_path: Path) -> None:
    """finish_run stores status and counts; latest_run_id is the run started last."""
    with ResultsStore.open(tmp_path / "run.duckdb") as store:
        assert store.latest_run_id() is None
        store.start_run("run-1", source="a", config={}, arms=["baseline"])
        store.start_run("run-2", source="b", config={"path": Path("/x")}, arms=["candidate"])
        store.finish_run("run-2", status="done", counts={"sent": 3, "ok": 2})
        assert store.latest_run_id() == "run-2"
        runs = {run["run_id"]: run for run in store.runs()}
        with pytest.raises(AnalysisError, match="never started"):
            store.finish_run("run-9", status="done", counts={})
        with pytest.raises(ValueError, match="status is 'ok'"):
            store.finish_run("run-1", status="ok", counts={})
    assert runs["run-2"]["counts"] == {"sent": 3, "ok": 2}
    assert runs["run-2"]["config"] == {"path": "/x"}
    assert runs["run-2"]["ended_at"] >= runs["run-2"]["started_at"]
    assert runs["run-1"]["status"] == "running"


@pytest.mark.parametrize("status", END_STATUSES)
@pytest.mark.parametrize("layout", ["run.duckdb", "out/"])
def test_every_end_status_is_stored_by_both_layouts(
    tmp_path: Path, layout: str, status: str
) -> None:
    """done, interrupted, failed and budget_exhausted all end a run in either layout."""
    with open_results(f"{tmp_path}/{layout}") as sink:
        sink.start_run("run-1", source="t.jsonl", config={}, arms=["baseline"])
        sink.finish_run("run-1", status=status, counts={"sent": 1})
    assert _read(tmp_path / layout, "SELECT status FROM runs") == [(status,)]
    assert "budget_exhausted" in END_STATUSES


def test_a_store_made_before_budget_exhausted_existed_accepts_it(tmp_path: Path) -> None:
    """A version-1 file whose runs table allowed fewer statuses takes the new one, rows kept."""
    path = tmp_path / "old.duckdb"
    with ResultsStore.open(path) as store:
        store.start_run("run-0", source="a", config={}, arms=["baseline"])
        store.write([_row("t-1", run_id="run-0")])
    with duckdb.connect(str(path)) as con:  # the runs table as shadow 1.x created it
        con.execute("CREATE TABLE runs_old AS SELECT * FROM runs").complete()
        con.execute("DROP TABLE runs").complete()
        con.execute(
            "CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, started_at TIMESTAMPTZ NOT NULL,"
            " ended_at TIMESTAMPTZ, source VARCHAR, config JSON, arms VARCHAR[], counts JSON,"
            " status VARCHAR NOT NULL CHECK (status IN ('running', 'done', 'interrupted',"
            " 'failed')))"
        ).complete()
        con.execute("INSERT INTO runs SELECT * FROM runs_old").complete()
        con.execute("DROP TABLE runs_old").complete()
        with pytest.raises(duckdb.ConstraintException):
            con.execute("UPDATE runs SET status = 'budget_exhausted'").complete()
    with ResultsStore.open(path) as store:
        store.start_run("run-1", source="b", config={}, arms=["baseline"])
        store.finish_run("run-1", status="budget_exhausted", counts={"sent": 2})
        statuses = {run["run_id"]: run["status"] for run in store.runs()}
        assert store.done_keys("run-0") == {("t-1", "baseline")}
    assert statuses == {"run-0": "running", "run-1": "budget_exhausted"}


def test_reopening_keeps_rows_and_an_empty_placeholder_becomes_a_store(tmp_path: Path) -> None:
    """A results file opens again with its rows; a zero-byte file (mktemp) is taken as new."""
    path = tmp_path / "run.duckdb"
    with ResultsStore.open(path) as store:
        store.write([_row("t-1")])
    with ResultsStore.open(path) as store:
        store.write([_row("t-2")])
        assert store.done_keys("run-1") == {("t-1", "baseline"), ("t-2", "baseline")}
    placeholder = tmp_path / "placeholder.duckdb"
    placeholder.touch()
    ResultsStore.open(placeholder).close()
    assert _read(placeholder, "SELECT count(*) FROM results") == [(0,)]


def test_a_store_from_a_newer_shadow_is_refused(tmp_path: Path) -> None:
    """A schema_version above this shadow's is a usage error that says to upgrade."""
    path = tmp_path / "run.duckdb"
    ResultsStore.open(path).close()
    with duckdb.connect(str(path)) as con:
        con.execute("UPDATE meta SET schema_version = 2").complete()
    with pytest.raises(UsageError, match=r"newer shadow.*upgrade"):
        ResultsStore.open(path)


def test_a_duckdb_file_of_something_else_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    """Opening or reading a DuckDB database without shadow's meta table names the file."""
    path = tmp_path / "other.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE users (id INTEGER)").complete()
    with pytest.raises(UsageError, match=r"other\.duckdb is not a shadow results store"):
        ResultsStore.open(path)
    with pytest.raises(UsageError, match=r"other\.duckdb is not a shadow results store"):
        _read(path, "SELECT 1")


def test_a_text_file_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    """A file that is not DuckDB at all is refused, for writing and for reading."""
    path = tmp_path / "notes.txt"
    path.write_text("not a database\n" * 100)
    with pytest.raises(UsageError, match=r"notes\.txt is not a shadow results store"):
        ResultsStore.open(path)
    with pytest.raises(UsageError, match=r"notes\.txt is not a shadow results store"):
        _read(path, "SELECT 1")
    assert path.read_text().startswith("not a database")


def test_reading_a_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    """results_relation on a path that does not exist names it."""
    with pytest.raises(UsageError, match=r"missing\.duckdb does not exist"):
        _read(tmp_path / "missing.duckdb", "SELECT 1")


def test_a_closed_store_refuses_writes_and_closes_twice(tmp_path: Path) -> None:
    """After close, write raises AnalysisError; close itself is safe to repeat."""
    store = ResultsStore.open(tmp_path / "run.duckdb")
    store.close()
    store.close()
    with pytest.raises(AnalysisError, match="closed"):
        store.write([_row()])


def test_threads_can_share_one_store(tmp_path: Path) -> None:
    """Writes from several threads at once all land, each batch whole."""
    path = tmp_path / "run.duckdb"
    with ResultsStore.open(path) as store:
        threads = [
            threading.Thread(target=store.write, args=([_row(f"t-{n}-{i}") for i in range(200)],))
            for n in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert _read(path, "SELECT count(*) FROM results") == [(800,)]


def test_trace_row_from_record_takes_what_production_saw() -> None:
    """TraceRow.from_record copies request, production status, latency and model."""
    record = TraceRecord(
        trace_id="t-7",
        captured_at=1_700_000_000_000_000_000,
        service="chat-api",
        request=HttpRequest(method="POST", path="/v1/chat/completions", body="{}"),
        response=HttpResponse(status=429),
        timing=Timing(latency_ms=12.5),
        usage=Usage(model="shadow-small"),
        slices={"tenant": "acme"},
    )
    assert TraceRow.from_record(record, run_id="run-1") == _trace(
        "t-7",
        request_body="{}",
        production_status=429,
        production_latency_ms=12.5,
        production_model="shadow-small",
    )


def test_a_result_row_with_an_unknown_arm_is_refused() -> None:
    """Arms are the four of docs/architecture.md, "Results"; a typo fails where the row is made."""
    with pytest.raises(ValueError, match="arm is 'canidate'"):
        _row(arm="canidate")


# --- Parquet parts -----------------------------------------------------------------------------


def test_two_parquet_writers_in_one_directory_read_back_as_one_run(tmp_path: Path) -> None:
    """Two writers share a directory; the reader sees their union, one row per key, one run."""
    out = tmp_path / "out"
    first = ParquetResultsWriter(out, writer_id="host-a")
    second = ParquetResultsWriter(out, writer_id="host-b")
    for writer in (first, second):
        writer.start_run("run-1", source="kafka://k/t", config={}, arms=["baseline", "candidate"])
    first.write(
        [_row(f"a-{i}", arm) for i in range(30) for arm in ("baseline", "candidate")],
        [_trace(f"a-{i}") for i in range(30)],
    )
    second.write([_row(f"b-{i}") for i in range(20)], [_trace(f"b-{i}") for i in range(20)])
    second.write([_row("a-0", latency_ms=1.5)])  # a rewrite of a key the other writer wrote
    first.finish_run("run-1", status="done", counts={"sent": 60, "cost_usd": 0.5})
    second.finish_run("run-1", status="done", counts={"sent": 21, "cost_usd": 0.25})
    first.close()
    second.close()

    parts = sorted(p.name for p in (out / "results").iterdir())
    assert parts == [
        "part-run-1-host-a-000002.parquet",
        "part-run-1-host-b-000002.parquet",
        "part-run-1-host-b-000003.parquet",
    ]
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert _read(out, "SELECT arm, count(*) FROM results GROUP BY arm ORDER BY arm") == [
        ("baseline", 50),
        ("candidate", 30),
    ]
    assert _read(out, "SELECT count(*) FROM traces") == [(50,)]
    assert _read(
        out, "SELECT latency_ms FROM results WHERE trace_id = 'a-0' AND arm = 'baseline'"
    ) == [(1.5,)]
    ((run_id, status, counts, ended),) = _read(
        out, "SELECT run_id, status, counts, ended_at IS NOT NULL FROM runs"
    )
    assert (run_id, status, ended) == ("run-1", "done", True)
    assert json.loads(counts) == {"sent": 81, "cost_usd": 0.75}


def test_parquet_rows_round_trip_like_the_duckdb_file(tmp_path: Path) -> None:
    """Parquet parts keep MAP, NULL, list and unicode values exactly, with the same columns."""
    written = [
        _row("t-1", output_text="naïve café ✓ 🚀"),
        _row("t-2", slices={}, ok=False, error="connect", chunk_offsets_ms=None, latency_ms=None),
    ]
    with ParquetResultsWriter(tmp_path / "out") as writer:
        writer.write(written)
        assert writer.done_keys("run-1") == {("t-1", "baseline"), ("t-2", "baseline")}
    assert _read_results(tmp_path / "out") == written
    columns = _read(tmp_path / "out", "SELECT column_name, column_type FROM (DESCRIBE results)")
    assert dict(columns)["slices"] == "MAP(VARCHAR, VARCHAR)"


def test_a_resumed_parquet_run_keeps_its_start_and_ends_done(tmp_path: Path) -> None:
    """A writer that resumes an interrupted run supersedes it: earliest start, status done."""
    out = tmp_path / "out"
    with ParquetResultsWriter(out, writer_id="one") as writer:
        writer.start_run("run-1", source="s", config={}, arms=["baseline"])
        writer.finish_run("run-1", status="interrupted", counts={"sent": 5})
        (first,) = writer.runs()
    with ParquetResultsWriter(out, writer_id="two") as writer:
        writer.start_run("run-1", source="s", config={}, arms=["baseline"])
        assert writer.runs()[0]["status"] == "running"
        writer.finish_run("run-1", status="done", counts={"sent": 7})
        (merged,) = writer.runs()
        assert writer.latest_run_id() == "run-1"
    assert merged["started_at"] == first["started_at"]
    assert (merged["status"], merged["counts"]) == ("done", {"sent": 12})


def test_a_parquet_run_reports_budget_exhausted_when_a_writer_ran_out(tmp_path: Path) -> None:
    """One writer out of budget and one done: the merged run says budget_exhausted."""
    out = tmp_path / "out"
    for writer_id, status in (("a", "done"), ("b", "budget_exhausted")):
        with ParquetResultsWriter(out, writer_id=writer_id) as writer:
            writer.start_run("run-1", source="s", config={}, arms=["baseline"])
            writer.finish_run("run-1", status=status, counts={"sent": 1})
    assert _read(out, "SELECT status FROM runs") == [("budget_exhausted",)]


def test_an_empty_parquet_directory_reads_as_empty_tables(tmp_path: Path) -> None:
    """A directory a writer opened but never wrote to gives empty, typed views."""
    ParquetResultsWriter(tmp_path / "out").close()
    assert _read(tmp_path / "out", "SELECT count(*) FROM results") == [(0,)]
    assert _read(tmp_path / "out", "SELECT count(*) FROM runs") == [(0,)]


def test_a_directory_that_is_not_a_results_store_is_a_usage_error(tmp_path: Path) -> None:
    """results_relation on an unrelated directory names it."""
    (tmp_path / "photos").mkdir()
    with pytest.raises(UsageError, match=r"photos is not a shadow results store"):
        _read(tmp_path / "photos", "SELECT 1")


def test_open_results_picks_the_layout_from_the_path(tmp_path: Path) -> None:
    """A trailing slash or an existing directory means Parquet parts; else a DuckDB file."""
    (tmp_path / "existing").mkdir()
    opened = [
        open_results(f"{tmp_path}/new/"),
        open_results(tmp_path / "existing"),
        open_results(tmp_path / "run.duckdb"),
    ]
    for sink in opened:
        sink.close()
    assert [type(sink) for sink in opened] == [
        ParquetResultsWriter,
        ParquetResultsWriter,
        ResultsStore,
    ]


# --- public surface ----------------------------------------------------------------------------


def test_the_package_exports_the_results_api() -> None:
    """shadow.results exports exactly the chosen names, sorted."""
    expected = [
        "ARMS",
        "END_STATUSES",
        "RESULTS_SCHEMA_VERSION",
        "AsyncResultsWriter",
        "ParquetResultsWriter",
        "ResultRow",
        "ResultsSink",
        "ResultsStore",
        "TraceRow",
        "open_results",
        "results_relation",
    ]
    assert shadow.results.__all__ == expected
    assert all(hasattr(shadow.results, name) for name in expected)
