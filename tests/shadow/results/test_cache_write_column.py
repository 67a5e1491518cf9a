"""The ``cache_write_tokens`` column: written and read in both layouts, and a store written
before it existed still opens, reads NULL, and gains the column when written again."""

from __future__ import annotations

from pathlib import Path

import duckdb

from shadow.results.parquet import ParquetResultsWriter
from shadow.results.rows import ResultRow
from shadow.results.store import ResultsStore
from shadow.results.views import results_relation


def _row(trace_id: str, written: int | None) -> ResultRow:
    return ResultRow(
        run_id="run-1",
        trace_id=trace_id,
        arm="candidate",
        scheduled_at=1.0,
        ok=True,
        model="claude-3-5-haiku",
        prompt_tokens=2312,
        completion_tokens=25,
        cached_tokens=2000,
        cache_write_tokens=written,
    )


def _written(path: Path | str) -> list[tuple[str, int | None]]:
    with duckdb.connect() as con:
        results_relation(con, path)
        sql = "SELECT trace_id, cache_write_tokens FROM results ORDER BY trace_id"
        return [(str(t), w) for t, w in con.execute(sql).fetchall()]


def test_both_layouts_keep_cache_write_tokens(tmp_path: Path) -> None:
    with ResultsStore.open(tmp_path / "run.duckdb") as store:
        store.write([_row("t-1", 300), _row("t-2", None)])
    with ParquetResultsWriter(tmp_path / "parts") as writer:
        writer.write([_row("t-1", 300), _row("t-2", None)])
    assert _written(tmp_path / "run.duckdb") == [("t-1", 300), ("t-2", None)]
    assert _written(tmp_path / "parts") == [("t-1", 300), ("t-2", None)]


def test_a_duckdb_file_from_before_the_column_reads_null_and_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    with ResultsStore.open(path) as store:
        store.write([_row("t-1", 300)])
    with duckdb.connect(str(path)) as con:  # as an older shadow wrote it
        con.execute("ALTER TABLE results DROP COLUMN cache_write_tokens")
    assert _written(path) == [("t-1", None)]
    with ResultsStore.open(path) as store:  # opening to write adds the column
        store.write([_row("t-2", 120)])
    assert _written(path) == [("t-1", None), ("t-2", 120)]


def test_parquet_parts_from_before_the_column_read_null(tmp_path: Path) -> None:
    out = tmp_path / "parts"
    with ParquetResultsWriter(out) as writer:
        writer.write([_row("t-1", 300)])
    (part,) = (out / "results").glob("part-*.parquet")
    with duckdb.connect() as con:  # rewrite the part as an older shadow wrote it
        con.execute(
            f"COPY (SELECT * EXCLUDE (cache_write_tokens) FROM read_parquet('{part}'))"
            f" TO '{part}.old' (FORMAT parquet)"
        )
    Path(f"{part}.old").replace(part)
    assert _written(out) == [("t-1", None)]
    with ParquetResultsWriter(out, writer_id="new") as writer:  # old and new parts together
        writer.write([_row("t-2", 120)])
    assert _written(out) == [("t-1", None), ("t-2", 120)]
