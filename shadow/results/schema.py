"""The results schema: its tables and columns, its version, and the checks that a store is one.

Both layouts hold the same three tables (docs/architecture.md, "Results"): ``runs``,
``traces`` and ``results``. A DuckDB file also has a one-row ``meta`` table whose
``schema_version`` tells a results store from any other DuckDB database; a Parquet directory
has a ``shadow-results.json`` marker holding the same number. A store written by a newer shadow
(a higher version) is refused rather than misread. SQL text built here uses only this module's
constants; values are bound, or quoted with :func:`sql_str`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import duckdb

from shadow.errors import UsageError

__all__ = [
    "ADDED_COLUMNS",
    "COLUMNS",
    "END_STATUSES",
    "KEYS",
    "MAP",
    "MARKER",
    "RESULTS_SCHEMA_VERSION",
    "RESULT_COLUMNS",
    "RUN_COLUMNS",
    "SCHEMA",
    "TRACE_COLUMNS",
    "check_marker",
    "check_schema",
    "check_status",
    "check_version",
    "columns_sql",
    "migrate",
    "open_error",
    "present_columns",
    "sql_str",
    "user_tables",
]

RESULTS_SCHEMA_VERSION: Final = 1
END_STATUSES: Final = ("done", "interrupted", "failed", "budget_exhausted")
"""How a run can end; ``running`` is the status until it does."""
MARKER: Final = "shadow-results.json"
"""The file that marks a directory of Parquet parts as a results store."""

MAP: Final = "MAP(VARCHAR, VARCHAR)"
# fmt: off
RESULT_COLUMNS: Final = (
    ("run_id", "VARCHAR"), ("trace_id", "VARCHAR"), ("arm", "VARCHAR"), ("attempt", "INTEGER"),
    ("slices", MAP), ("scheduled_at", "DOUBLE"), ("sent_at", "DOUBLE"), ("ttft_ms", "DOUBLE"),
    ("latency_ms", "DOUBLE"), ("service_ms", "DOUBLE"), ("status", "INTEGER"), ("ok", "BOOLEAN"),
    ("error", "VARCHAR"), ("model", "VARCHAR"), ("prompt_tokens", "INTEGER"),
    ("completion_tokens", "INTEGER"), ("cached_tokens", "INTEGER"), ("cost_usd", "DOUBLE"),
    ("output_text", "VARCHAR"), ("chunk_offsets_ms", "DOUBLE[]"),
    ("cache_write_tokens", "INTEGER"),
)
TRACE_COLUMNS: Final = (
    ("run_id", "VARCHAR"), ("trace_id", "VARCHAR"), ("captured_at", "BIGINT"),
    ("service", "VARCHAR"), ("slices", MAP), ("method", "VARCHAR"), ("path", "VARCHAR"),
    ("request_body", "VARCHAR"), ("production_status", "INTEGER"),
    ("production_latency_ms", "DOUBLE"), ("production_model", "VARCHAR"),
)
RUN_COLUMNS: Final = (
    ("run_id", "VARCHAR"), ("started_at", "TIMESTAMPTZ"), ("ended_at", "TIMESTAMPTZ"),
    ("source", "VARCHAR"), ("config", "JSON"), ("arms", "VARCHAR[]"), ("counts", "JSON"),
    ("status", "VARCHAR"),
)
# fmt: on
KEYS: Final = {
    "results": ("run_id", "trace_id", "arm", "attempt"),
    "traces": ("run_id", "trace_id"),
}
"""The primary key of each row table: writing a key again replaces its row."""
COLUMNS: Final = {"results": RESULT_COLUMNS, "traces": TRACE_COLUMNS}
"""The row tables and their columns, in order."""
ADDED_COLUMNS: Final[dict[str, tuple[str, ...]]] = {"results": ("cache_write_tokens",)}
"""Columns a table gained within schema version 1, last in its column order: a store written
before lacks them. Opening a DuckDB file to write adds them (:func:`migrate`); reading a file
or Parquet parts without them reads NULL (not reported)."""


def columns_sql(columns: Sequence[tuple[str, str]]) -> str:
    """``name TYPE, ...`` for a CREATE TABLE."""
    return ", ".join(f"{name} {sql_type}" for name, sql_type in columns)


def sql_str(text: str) -> str:
    """``text`` as a quoted SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _runs_ddl(name: str) -> str:
    statuses = ", ".join(sql_str(status) for status in ("running", *END_STATUSES))
    return (
        f"CREATE TABLE {name} (run_id VARCHAR PRIMARY KEY, started_at TIMESTAMPTZ NOT NULL,"
        " ended_at TIMESTAMPTZ, source VARCHAR, config JSON, arms VARCHAR[], counts JSON,"
        f" status VARCHAR NOT NULL CHECK (status IN ({statuses})))"
    )


SCHEMA: Final = (
    "CREATE TABLE meta (schema_version INTEGER NOT NULL, created_at TIMESTAMPTZ NOT NULL,"
    " created_by VARCHAR NOT NULL)",
    _runs_ddl("runs"),
    *(
        f"CREATE TABLE {table} ({columns_sql(COLUMNS[table])},"
        f" PRIMARY KEY ({', '.join(KEYS[table])}))"
        for table in ("traces", "results")
    ),
)
"""The statements that create an empty DuckDB results store (``meta`` is filled after)."""


def check_status(status: str) -> None:
    """Raise ValueError unless ``status`` is one a run can end with."""
    if status not in END_STATUSES:
        raise ValueError(f"status is {status!r}; it must be one of {', '.join(END_STATUSES)}")


def present_columns(con: duckdb.DuckDBPyConnection, database: str, table: str) -> set[str]:
    """The names of ``table``'s columns in ``database``."""
    sql = "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND table_name = ?"
    return {str(row[0]) for row in con.execute(sql, [database, table]).fetchall()}


def migrate(con: duckdb.DuckDBPyConnection) -> None:
    """Bring an existing version-1 store up to date: the columns of :data:`ADDED_COLUMNS` are
    added (NULL in the rows already there), and the ``runs`` table takes every status of
    :data:`END_STATUSES`.

    A version-1 file created before a status was added has a CHECK that refuses it; DuckDB
    cannot alter a CHECK, so the table is rebuilt, rows kept, in one transaction.
    """
    database = str(con.execute("SELECT current_database()").fetchall()[0][0])
    for table, added in ADDED_COLUMNS.items():
        present = present_columns(con, database, table)
        types = dict(COLUMNS[table])
        for name in added:
            if name not in present:
                con.execute(f"ALTER TABLE {table} ADD COLUMN {name} {types[name]}").complete()
    checks = con.execute(
        "SELECT expression FROM duckdb_constraints() WHERE database_name = current_database()"
        " AND table_name = 'runs' AND constraint_type = 'CHECK'"
    ).fetchall()
    if all(all(repr(s) in str(expr) for s in END_STATUSES) for (expr,) in checks):
        return
    con.begin()
    try:
        con.execute(_runs_ddl("runs_migrated")).complete()
        con.execute("INSERT INTO runs_migrated SELECT * FROM runs").complete()
        con.execute("DROP TABLE runs").complete()
        con.execute("ALTER TABLE runs_migrated RENAME TO runs").complete()
        con.commit()
    except BaseException:
        con.rollback()
        raise


def user_tables(con: duckdb.DuckDBPyConnection, database: str) -> set[str]:
    """The names of the tables and views in ``database`` (DuckDB's own left out)."""
    rows = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND NOT internal"
        " UNION ALL SELECT view_name FROM duckdb_views() WHERE database_name = ? AND NOT internal",
        [database, database],
    ).fetchall()
    return {str(name) for (name,) in rows}


def check_schema(
    con: duckdb.DuckDBPyConnection, database: str, tables: set[str], path: Path
) -> None:
    """Raise UsageError unless ``database`` holds a results store this shadow can read."""
    version: object = None
    if "meta" in tables:
        try:
            sql = f'SELECT max(schema_version) FROM "{database}".main.meta'  # noqa: S608
            version = con.execute(sql).fetchall()[0][0]
        except duckdb.Error:
            version = None
    if not isinstance(version, int) or not {"runs", "traces", "results"} <= tables:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise UsageError(
            f"{path} is not a shadow results store (a DuckDB database with tables {shown} "
            "and no shadow meta table); give a new path or an existing results file"
        )
    check_version(version, path)
    for table, columns in COLUMNS.items():
        present = present_columns(con, database, table)
        added = ADDED_COLUMNS.get(table, ())
        missing = [name for name, _ in columns if name not in present and name not in added]
        if missing:
            raise UsageError(
                f"{path}: table {table} lacks column(s) {', '.join(missing)}; the file was "
                "altered or not written by shadow: replay into a new results file"
            )


def check_version(version: object, path: Path) -> None:
    """Raise UsageError unless ``version`` is a schema version this shadow reads."""
    if not isinstance(version, int) or version > RESULTS_SCHEMA_VERSION:
        raise UsageError(
            f"{path} was written by a newer shadow (results schema_version {version}; this "
            f"shadow reads up to {RESULTS_SCHEMA_VERSION}); upgrade shadow to read it"
        )


def check_marker(directory: Path) -> None:
    """Raise UsageError unless ``directory`` is a Parquet results store this shadow reads."""
    try:
        version = json.loads((directory / MARKER).read_text())["schema_version"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(
            f"{directory} is not a shadow results store (no readable {MARKER} in it)"
        ) from None
    check_version(version, directory)


def open_error(path: Path, exc: duckdb.Error) -> UsageError:
    """The user error a DuckDB error on opening ``path`` means (not DuckDB, or locked)."""
    text = str(exc).splitlines()[0]
    if "not a valid DuckDB database file" in text:
        return UsageError(
            f"{path} is not a shadow results store (not a DuckDB database file); "
            "give a new path or an existing results file"
        )
    if "lock" in text.lower() or "already attached" in text:
        return UsageError(
            f"{path} is in use by another writer ({text}); wait for it to finish, or have "
            "several processes write Parquet parts into a directory (a path ending in '/')"
        )
    return UsageError(f"cannot open results store {path}: {text}")
