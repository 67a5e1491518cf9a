"""The read views: ``results``, ``traces`` and ``runs`` over either layout, for the same SQL.

:func:`results_relation` puts temporary views with those names on a DuckDB connection over a
DuckDB results file or a directory of Parquet parts (docs/architecture.md, "Results" and
"Scale-out"). Both give the same columns and one row per key, so analysis runs one set of
queries on both layouts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import duckdb

from shadow.errors import UsageError
from shadow.results.schema import (
    ADDED_COLUMNS,
    COLUMNS,
    KEYS,
    RUN_COLUMNS,
    check_marker,
    check_schema,
    open_error,
    present_columns,
    sql_str,
    user_tables,
)

__all__ = ["results_relation"]

_ATTACHED: Final = "shadow_results"


def results_relation(con: duckdb.DuckDBPyConnection, path: str | os.PathLike[str]) -> None:
    """Create temporary views ``results``, ``traces`` and ``runs`` in ``con`` over ``path``.

    ``path`` is a DuckDB results file (attached read-only as ``shadow_results``) or a Parquet
    results directory: a local one, or a URL ending in '/' that DuckDB can glob (such as
    ``s3://bucket/run/`` with httpfs loaded). Both give the same columns and one row per key:
    the newest version of a rewritten key; in ``runs``, one row per run merged over its
    writers (earliest start, summed numeric counts, and the status of its latest writers).

    Raises:
        UsageError: ``path`` does not exist or is not a shadow results store.
    """
    text = os.fspath(path)
    remote = "://" in text
    if text.endswith(("/", os.sep)) or (not remote and Path(text).is_dir()):
        _parquet_views(con, text.rstrip("/" + os.sep), remote=remote)
        return
    file = Path(text)
    if not file.exists():
        raise UsageError(f"{file} does not exist; give the results file a replay wrote")
    con.execute(f"DETACH DATABASE IF EXISTS {_ATTACHED}").complete()
    try:
        con.execute(f"ATTACH {sql_str(text)} AS {_ATTACHED} (READ_ONLY)").complete()
        check_schema(con, _ATTACHED, user_tables(con, _ATTACHED), file)
    except duckdb.Error as exc:
        raise open_error(file, exc) from None
    except UsageError:
        con.execute(f"DETACH DATABASE {_ATTACHED}").complete()
        raise
    for name in ("results", "traces", "runs"):
        select = "*"
        if name in COLUMNS:  # a file written before a column was added reads it as NULL
            present = present_columns(con, _ATTACHED, name)
            select = _select(COLUMNS[name], present, cast=False)
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT {select} FROM {_ATTACHED}.main.{name}"  # noqa: S608
        ).complete()


def _parquet_views(con: duckdb.DuckDBPyConnection, base: str, *, remote: bool) -> None:
    if not remote:
        if not Path(base).is_dir():
            raise UsageError(f"{base} does not exist; give the directory a replay wrote")
        check_marker(Path(base))

    def files(sub: str, pattern: str) -> str | None:
        """The glob of a folder's files, or None for a local folder without any."""
        if not remote and not any((Path(base) / sub).glob(pattern)):
            return None
        return sql_str(f"{base}/{sub}/{pattern}")

    for table, columns in COLUMNS.items():
        glob = files(table, "part-*.parquet")
        if glob is None:
            sql = _empty_select(columns)
        else:
            parts = f"read_parquet({glob}, union_by_name = true)"
            present = None
            if table in ADDED_COLUMNS:  # parts written before a column was added lack it
                present = _parquet_columns(con, parts, f"{base}/{table}")
            casts = _select(columns, present, cast=True)
            sql = (
                f"SELECT {casts} FROM {parts}"  # noqa: S608
                f" QUALIFY row_number() OVER (PARTITION BY {', '.join(KEYS[table])}"
                " ORDER BY _written_at DESC NULLS LAST) = 1"
            )
        _create_view(con, table, sql, f"{base}/{table}")
    glob = files("runs", "*.json")
    if glob is None:
        runs = _empty_select(RUN_COLUMNS)
    else:
        runs = _MERGED_RUNS.format(glob=glob, columns=_RUN_JSON_COLUMNS)
    _create_view(con, "runs", runs, f"{base}/runs")


def _create_view(con: duckdb.DuckDBPyConnection, name: str, sql: str, where: str) -> None:
    """A view over the parts; parts that cannot be read (damaged, not Parquet, a column
    missing from every part) are bad input, named in one line."""
    try:
        con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {sql}").complete()
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        raise UsageError(
            f"cannot read the results in {where}: {first}; is a part damaged?"
        ) from None


def _select(columns: Sequence[tuple[str, str]], present: set[str] | None, *, cast: bool) -> str:
    """The select list of ``columns``: each one read (cast to its type when ``cast``), or NULL
    when ``present`` (the source's columns; None: all there) lacks it."""
    out = []
    for name, sql_type in columns:
        if present is not None and name not in present:
            out.append(f"CAST(NULL AS {sql_type}) AS {name}")
        else:
            out.append(f"CAST({name} AS {sql_type}) AS {name}" if cast else name)
    return ", ".join(out)


def _parquet_columns(con: duckdb.DuckDBPyConnection, parts: str, where: str) -> set[str]:
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM {parts}").fetchall()  # noqa: S608
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        raise UsageError(
            f"cannot read the results in {where}: {first}; is a part damaged?"
        ) from None
    return {str(row[0]) for row in rows}


def _empty_select(columns: Sequence[tuple[str, str]]) -> str:
    return "SELECT " + ", ".join(f"CAST(NULL AS {t}) AS {n}" for n, t in columns) + " LIMIT 0"


# A run's status over its latest writers: one still running makes it running; else the
# gravest end wins (failed, then interrupted, then budget_exhausted), and done needs all done.
_MERGED_RUNS: Final = """
WITH w AS (
    SELECT * FROM read_json({glob}, format = 'auto', columns = {{{columns}}})
),
latest AS (  -- writers that ended before the run's last writer started were resumed since
    SELECT * FROM w WHERE ended_at IS NULL
        OR ended_at >= (SELECT max(l.started_at) FROM w AS l WHERE l.run_id = w.run_id)
),
kv AS (SELECT w.run_id, w.started_at, e.key, e.value FROM w, json_each(w.counts) AS e),
merged AS (
    SELECT run_id, key, CASE
        WHEN bool_and(json_type(value) IN ('UBIGINT', 'BIGINT'))
            THEN to_json(sum(TRY_CAST(value AS HUGEINT)))
        WHEN bool_and(json_type(value) IN ('UBIGINT', 'BIGINT', 'DOUBLE'))
            THEN to_json(sum(TRY_CAST(value AS DOUBLE)))
        ELSE arg_max(value, started_at) END AS value
    FROM kv GROUP BY run_id, key
),
counts AS (SELECT run_id, json_group_object(key, value) AS counts FROM merged GROUP BY run_id),
firsts AS (
    SELECT run_id, min(started_at) AS started_at, arg_max(source, started_at) AS source,
        arg_max(config, started_at) AS config, arg_max(arms, started_at) AS arms
    FROM w GROUP BY run_id
),
ends AS (
    SELECT run_id,
        CASE WHEN bool_or(ended_at IS NULL) THEN NULL ELSE max(ended_at) END AS ended_at,
        CASE WHEN bool_or(status = 'running') THEN 'running'
            WHEN bool_or(status = 'failed') THEN 'failed'
            WHEN bool_or(status = 'interrupted') THEN 'interrupted'
            WHEN bool_or(status = 'budget_exhausted') THEN 'budget_exhausted'
            ELSE 'done' END AS status
    FROM latest GROUP BY run_id
)
SELECT f.run_id, f.started_at, e.ended_at, f.source, f.config, f.arms,
    CAST(c.counts AS JSON) AS counts, e.status
FROM firsts AS f JOIN ends AS e USING (run_id) LEFT JOIN counts AS c USING (run_id)
"""
_RUN_JSON_COLUMNS: Final = ", ".join(f"{name}: '{sql_type}'" for name, sql_type in RUN_COLUMNS)
