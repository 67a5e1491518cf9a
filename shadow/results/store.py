"""The DuckDB file store: the default results layout, one ``.duckdb`` file per run set.

A :class:`ResultsStore` holds the three tables of docs/architecture.md, "Results" (``runs``,
``traces``, ``results``) and a one-row ``meta`` table whose ``schema_version`` tells a results
store from any other DuckDB file. Writes are idempotent on the primary key ``(run_id, trace_id,
arm, attempt)``: a key written again replaces its row. :func:`open_results` opens a results
path for writing in either layout (this file, or a Parquet directory).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb

from shadow._version import __version__
from shadow.errors import AnalysisError, UsageError
from shadow.results.base import ResultsBase
from shadow.results.parquet import ParquetResultsWriter
from shadow.results.rows import ResultRow, TraceRow
from shadow.results.schema import (
    COLUMNS,
    RESULTS_SCHEMA_VERSION,
    SCHEMA,
    check_schema,
    check_status,
    migrate,
    open_error,
    user_tables,
)
from shadow.results.staging import (
    Appenders,
    Rows,
    append,
    json_text,
    last_per_key,
    result_tuples,
    trace_tuples,
)

__all__ = ["ResultsStore", "open_results"]


class ResultsStore(ResultsBase):
    """A DuckDB results file: one connection, safe to share between threads (a lock orders calls).

    Open it with :meth:`open`. The methods block, so async code goes through
    :class:`~shadow.results.writer.AsyncResultsWriter` or ``asyncio.to_thread``. Opening a
    file an older shadow made lets its ``runs`` table take every status a run can now end with.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path) -> None:
        self.path = path
        self._con = con
        self._lock = threading.Lock()
        self._appenders = Appenders()

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> ResultsStore:
        """Open the results file at ``path``, creating it (and its schema) when new.

        Raises:
            UsageError: ``path`` is a directory, not a DuckDB file, a DuckDB database that is
                not a results store, written by a newer shadow, or held by another process.
        """
        path = Path(path)
        if path.is_dir():
            raise UsageError(
                f"{path} is a directory; give a .duckdb file, or end the path with '/' "
                "to write Parquet parts into it"
            )
        if path.is_file() and path.stat().st_size == 0:
            path.unlink()  # an empty placeholder (mktemp) holds nothing to lose
        try:
            con = duckdb.connect(str(path))
        except duckdb.Error as exc:
            raise open_error(path, exc) from None
        try:
            # Each checkpoint rewrites the key index; fewer, larger ones keep long runs fast.
            con.execute("SET checkpoint_threshold = '64MB'").complete()
            database = str(con.execute("SELECT current_database()").fetchall()[0][0])
            tables = user_tables(con, database)
            if tables:
                check_schema(con, database, tables, path)
                migrate(con)
            else:
                con.begin()
                for statement in SCHEMA:
                    con.execute(statement).complete()
                con.execute(
                    "INSERT INTO meta VALUES (?, now(), ?)",
                    [RESULTS_SCHEMA_VERSION, f"shadow {__version__}"],
                ).complete()
                con.commit()
        except BaseException:
            con.close()
            raise
        return cls(con, path)

    def start_run(
        self, run_id: str, *, source: str, config: Mapping[str, Any], arms: Sequence[str]
    ) -> None:
        """Record that ``run_id`` is running; a resumed run keeps its first ``started_at``."""
        self._query(
            "INSERT INTO runs (run_id, started_at, source, config, arms, status)"
            " VALUES (?, now(), ?, ?, ?, 'running') ON CONFLICT (run_id) DO UPDATE SET"
            " ended_at = NULL, source = excluded.source, config = excluded.config,"
            " arms = excluded.arms, counts = NULL, status = 'running'",
            [run_id, source, json_text(config), list(arms)],
        )

    def finish_run(self, run_id: str, *, status: str, counts: Mapping[str, Any]) -> None:
        """Record how ``run_id`` ended (one of ``END_STATUSES``) and what it counted."""
        check_status(status)
        updated = self._query(
            "UPDATE runs SET ended_at = now(), status = ?, counts = ? WHERE run_id = ?",
            [status, json_text(counts), run_id],
        )
        if updated[0][0] == 0:
            raise AnalysisError(f"run {run_id!r} was never started in {self.path}")

    def write(self, results: Sequence[ResultRow], traces: Sequence[TraceRow] = ()) -> None:
        """Write rows in one transaction; a key written before is replaced, never duplicated."""
        batches = {"traces": trace_tuples(traces), "results": result_tuples(results)}
        if not any(batches.values()):
            return
        with self._lock:
            if self._con is None:
                raise AnalysisError(f"the results store {self.path} is closed")
            try:
                try:
                    self._transaction(self._con, "INSERT INTO", batches)
                except duckdb.ConstraintException:
                    # Plain INSERT is a third faster than upsert. Keys come back only on a
                    # resume or a rewrite, and then the batch takes the replacing path.
                    batches = {table: last_per_key(table, rows) for table, rows in batches.items()}
                    self._transaction(self._con, "INSERT OR REPLACE INTO", batches)
            except duckdb.Error as exc:
                raise AnalysisError(f"cannot write results to {self.path}: {exc}") from None

    def ingest_parts(self, parts: Sequence[str | os.PathLike[str]]) -> None:
        """Write the rows of Parquet parts (a :class:`ParquetResultsWriter`'s, each under its
        table's directory, one key at most once per table) in one transaction, as :meth:`write`.

        DuckDB reads them without the GIL, so a thread doing this never stalls the event loop.
        """
        by_table: dict[str, list[str]] = {}
        for part in parts:
            by_table.setdefault(Path(part).parent.name, []).append(os.fspath(part))
        unknown = set(by_table) - set(COLUMNS)
        if unknown:
            raise ValueError(f"parts of no results table: {sorted(unknown)}")
        with self._lock:
            if self._con is None:
                raise AnalysisError(f"the results store {self.path} is closed")
            try:
                try:
                    self._ingest(self._con, "INSERT INTO", by_table)
                except duckdb.ConstraintException:
                    self._ingest(self._con, "INSERT OR REPLACE INTO", by_table)
            except duckdb.Error as exc:
                raise AnalysisError(f"cannot write results to {self.path}: {exc}") from None

    @staticmethod
    def _ingest(con: duckdb.DuckDBPyConnection, verb: str, by_table: dict[str, list[str]]) -> None:
        con.begin()
        try:
            for table in ("traces", "results"):
                files = by_table.get(table)
                if files:
                    names = ", ".join(name for name, _ in COLUMNS[table])
                    con.execute(
                        f"{verb} {table} ({names}) SELECT {names} FROM read_parquet(?)",  # noqa: S608
                        [files],
                    ).fetchall()
            con.commit()
        except BaseException:
            con.rollback()
            raise

    def _transaction(
        self, con: duckdb.DuckDBPyConnection, verb: str, batches: dict[str, Rows]
    ) -> None:
        con.begin()
        try:
            for table, rows in batches.items():
                if rows:
                    appender = self._appenders.get(con, verb, table)
                    try:
                        append(appender, rows)
                        appender.flush()
                    except BaseException:
                        appender.clear()
                        raise
            con.commit()
        except BaseException:
            con.rollback()
            raise

    def _query(self, sql: str, params: Sequence[Any] | None = None) -> list[Any]:
        with self._lock:
            if self._con is None:
                raise AnalysisError(f"the results store {self.path} is closed")
            try:
                return self._con.execute(sql, params).fetchall()
            except duckdb.Error as exc:
                raise AnalysisError(f"results store {self.path}: {exc}") from None


def open_results(path: str | os.PathLike[str]) -> ResultsStore | ParquetResultsWriter:
    """Open a results path for writing: a DuckDB file, or a directory of Parquet parts.

    A path ending in '/' or naming an existing directory gets Parquet parts.
    """
    text = os.fspath(path)
    if text.endswith(("/", os.sep)) or Path(text).is_dir():
        return ParquetResultsWriter(text)
    return ResultsStore.open(text)
