"""The results store: what the replayer and live mirror write and the analyzer reads.

Two layouts hold the same three tables (DESIGN.md, "Results" and "Scale-out"):

- a DuckDB file (:class:`ResultsStore`), the default: ``runs``, ``traces``, ``results`` and a
  one-row ``meta`` table whose ``schema_version`` tells a results store from any other file;
- a directory of Parquet parts (:class:`ParquetResultsWriter`, ``--out DIR/``) that any number
  of processes write into without coordination: ``DIR/results/part-*.parquet``,
  ``DIR/traces/part-*.parquet`` and one ``DIR/runs/<run_id>-<writer_id>.json`` per writer.

Writes are idempotent on the primary key ``(run_id, trace_id, arm, attempt)``: the DuckDB file
upserts; the Parquet layout keeps every version and the reader takes the newest.
:func:`results_relation` puts views named ``results``, ``traces`` and ``runs`` over either layout
on a DuckDB connection, so analysis runs the same SQL on both.

Rows reach DuckDB through its appender. Converting Python dicts and lists there costs about
0.25 µs per element, so slices and chunk offsets travel as JSON text (msgspec encodes them) and
DuckDB's ``from_json`` turns them into ``MAP`` and ``DOUBLE[]`` inside the insert statement.
SQL text here is built only from this module's constants; values are bound or quoted.
"""

from __future__ import annotations

import json
import operator
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol, Self

import duckdb
import msgspec

from shadow._version import __version__
from shadow.errors import AnalysisError, UsageError
from shadow.trace.record import TraceRecord

__all__ = [
    "ARMS",
    "RESULTS_SCHEMA_VERSION",
    "ParquetResultsWriter",
    "ResultRow",
    "ResultsSink",
    "ResultsStore",
    "TraceRow",
    "open_results",
    "results_relation",
]

RESULTS_SCHEMA_VERSION: Final = 1
ARMS: Final = frozenset({"baseline", "candidate", "baseline_repeat", "production"})
_END_STATUSES: Final = ("done", "interrupted", "failed")


@dataclass(frozen=True, kw_only=True, slots=True)
class ResultRow:
    """One attempt of one trace on one arm (a row of ``results``; DESIGN.md, "Metric definitions").

    ``scheduled_at`` and ``sent_at`` are epoch seconds; ``ttft_ms`` and ``latency_ms`` count
    from the scheduled send, ``service_ms`` from the actual send. ``attempt`` 0 is the first try.
    """

    run_id: str
    trace_id: str
    arm: str
    attempt: int = 0
    slices: Mapping[str, str] = field(default_factory=dict)
    scheduled_at: float
    sent_at: float | None = None
    ttft_ms: float | None = None
    latency_ms: float | None = None
    service_ms: float | None = None
    status: int | None = None
    ok: bool
    error: str | None = None
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    cost_usd: float | None = None
    output_text: str | None = None
    chunk_offsets_ms: Sequence[float] | None = None

    def __post_init__(self) -> None:
        if self.arm not in ARMS:
            raise ValueError(f"arm is {self.arm!r}; it must be one of {sorted(ARMS)}")
        if self.attempt < 0:
            raise ValueError(f"attempt is {self.attempt}; it must be >= 0 (0 = first try)")


@dataclass(frozen=True, kw_only=True, slots=True)
class TraceRow:
    """One replayed trace as production saw it (a row of ``traces``)."""

    run_id: str
    trace_id: str
    captured_at: int
    """UTC epoch nanoseconds of the first request byte."""
    service: str
    slices: Mapping[str, str] = field(default_factory=dict)
    method: str
    path: str
    request_body: str | None = None
    production_status: int | None = None
    production_latency_ms: float | None = None
    production_model: str | None = None

    @classmethod
    def from_record(cls, record: TraceRecord, *, run_id: str) -> TraceRow:
        """The row for ``record`` in run ``run_id`` (a binary request body is left out)."""
        return cls(
            run_id=run_id,
            trace_id=record.trace_id,
            captured_at=record.captured_at,
            service=record.service,
            slices=record.slices,
            method=record.request.method,
            path=record.request.path,
            request_body=record.request.body,
            production_status=record.response.status if record.response else None,
            production_latency_ms=record.timing.latency_ms,
            production_model=record.usage.model if record.usage else None,
        )


class ResultsSink(Protocol):
    """Where result rows go: a :class:`ResultsStore` or a :class:`ParquetResultsWriter`."""

    def write(self, results: Sequence[ResultRow], traces: Sequence[TraceRow] = ()) -> None:
        """Write the rows durably in one go; rewriting a key replaces its row."""


# --- schema and rows ---------------------------------------------------------------------------

_MAP: Final = "MAP(VARCHAR, VARCHAR)"
# fmt: off
_RESULT_COLUMNS: Final = (
    ("run_id", "VARCHAR"), ("trace_id", "VARCHAR"), ("arm", "VARCHAR"), ("attempt", "INTEGER"),
    ("slices", _MAP), ("scheduled_at", "DOUBLE"), ("sent_at", "DOUBLE"), ("ttft_ms", "DOUBLE"),
    ("latency_ms", "DOUBLE"), ("service_ms", "DOUBLE"), ("status", "INTEGER"), ("ok", "BOOLEAN"),
    ("error", "VARCHAR"), ("model", "VARCHAR"), ("prompt_tokens", "INTEGER"),
    ("completion_tokens", "INTEGER"), ("cached_tokens", "INTEGER"), ("cost_usd", "DOUBLE"),
    ("output_text", "VARCHAR"), ("chunk_offsets_ms", "DOUBLE[]"),
)
_TRACE_COLUMNS: Final = (
    ("run_id", "VARCHAR"), ("trace_id", "VARCHAR"), ("captured_at", "BIGINT"),
    ("service", "VARCHAR"), ("slices", _MAP), ("method", "VARCHAR"), ("path", "VARCHAR"),
    ("request_body", "VARCHAR"), ("production_status", "INTEGER"),
    ("production_latency_ms", "DOUBLE"), ("production_model", "VARCHAR"),
)
_RUN_COLUMNS: Final = (
    ("run_id", "VARCHAR"), ("started_at", "TIMESTAMPTZ"), ("ended_at", "TIMESTAMPTZ"),
    ("source", "VARCHAR"), ("config", "JSON"), ("arms", "VARCHAR[]"), ("counts", "JSON"),
    ("status", "VARCHAR"),
)
# fmt: on
_KEYS: Final = {
    "results": ("run_id", "trace_id", "arm", "attempt"),
    "traces": ("run_id", "trace_id"),
}
_COLUMNS: Final = {"results": _RESULT_COLUMNS, "traces": _TRACE_COLUMNS}


def _columns_sql(columns: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{name} {sql_type}" for name, sql_type in columns)


_SCHEMA: Final = (
    "CREATE TABLE meta (schema_version INTEGER NOT NULL, created_at TIMESTAMPTZ NOT NULL,"
    " created_by VARCHAR NOT NULL)",
    "CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, started_at TIMESTAMPTZ NOT NULL,"
    " ended_at TIMESTAMPTZ, source VARCHAR, config JSON, arms VARCHAR[], counts JSON,"
    " status VARCHAR NOT NULL CHECK (status IN ('running', 'done', 'interrupted', 'failed')))",
    *(
        f"CREATE TABLE {table} ({_columns_sql(_COLUMNS[table])},"
        f" PRIMARY KEY ({', '.join(_KEYS[table])}))"
        for table in ("traces", "results")
    ),
)

_ENCODER = msgspec.json.Encoder()
_RESULT_FIELDS = operator.attrgetter(*(name for name, _ in _RESULT_COLUMNS))
_TRACE_FIELDS = operator.attrgetter(*(name for name, _ in _TRACE_COLUMNS))
# from_json with a structure reads these twice as fast as a CAST of the JSON text.
_FROM_JSON: Final = {_MAP: """'"MAP(VARCHAR, VARCHAR)"'""", "DOUBLE[]": """'["DOUBLE"]'"""}
_STAGED: Final = {
    table: (
        {name: "VARCHAR" if sql_type in _FROM_JSON else sql_type for name, sql_type in columns},
        ", ".join(
            f"from_json({name}, {_FROM_JSON[sql_type]}) AS {name}"
            if sql_type in _FROM_JSON
            else name
            for name, sql_type in columns
        ),
    )
    for table, columns in _COLUMNS.items()
}
"""Per table: the appender's column types (MAP and lists as JSON text) and the converting SELECT."""

Rows = list[tuple[Any, ...]]


def _json_map(slices: Mapping[str, str]) -> str:
    return _ENCODER.encode(slices if type(slices) is dict else dict(slices)).decode()


def _json_list(values: Sequence[float] | None) -> str | None:
    if values is None:
        return None
    return _ENCODER.encode(values if type(values) in (list, tuple) else list(values)).decode()


def _result_tuples(rows: Sequence[ResultRow]) -> Rows:
    out = []
    for row in rows:
        v = _RESULT_FIELDS(row)
        out.append((*v[:4], _json_map(v[4]), *v[5:19], _json_list(v[19])))
    return out


def _trace_tuples(rows: Sequence[TraceRow]) -> Rows:
    out = []
    for row in rows:
        v = _TRACE_FIELDS(row)
        out.append((*v[:4], _json_map(v[4]), *v[5:]))
    return out


def _last_per_key(table: str, rows: Rows) -> Rows:
    """Keep the last row of each key: one statement cannot write a key twice."""
    width = len(_KEYS[table])
    latest = {row[:width]: row for row in rows}
    return rows if len(latest) == len(rows) else list(latest.values())


_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _append(appender: duckdb.Appender, rows: Rows) -> None:
    """Buffer ``rows``; text with lone surrogates (from JSON escapes) gets U+FFFD instead.

    DuckDB refuses such text, and a model's odd output must not fail a whole batch.
    """
    try:
        appender.append_rows(rows)
    except duckdb.InvalidInputException as exc:
        appender.clear()
        if "surrogate" not in str(exc):
            raise
        appender.append_rows(
            [tuple(_SURROGATE.sub("\ufffd", v) if type(v) is str else v for v in r) for r in rows]
        )


def _check_status(status: str) -> None:
    if status not in _END_STATUSES:
        raise ValueError(f"status is {status!r}; it must be one of {', '.join(_END_STATUSES)}")


def _json_text(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), default=str, ensure_ascii=False, sort_keys=True)


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# --- what both layouts share -------------------------------------------------------------------


class _Results:
    """The reading methods and lifetime of both layouts; subclasses provide ``_query``."""

    _con: duckdb.DuckDBPyConnection | None
    _appenders: dict[tuple[str, str], duckdb.Appender]
    _lock: threading.Lock

    def _query(self, sql: str, params: Sequence[Any] | None = None) -> list[Any]:
        raise NotImplementedError

    def _appender(self, con: duckdb.DuckDBPyConnection, verb: str, table: str) -> duckdb.Appender:
        appender = self._appenders.get((verb, table))
        if appender is None:
            types, select = _STAGED[table]
            dml = f"{verb} {table} SELECT {select} FROM appender_data"  # noqa: S608 (constants)
            appender = self._appenders[verb, table] = con.query_appender(dml, types)
        return appender

    def done_keys(self, run_id: str) -> set[tuple[str, str]]:
        """The ``(trace_id, arm)`` pairs of ``run_id`` that have a result: what ``--resume`` skips.

        A pair is done once any attempt of it is written, so the replayer writes a pair's
        retries no later than the batch that holds its last attempt.
        """
        rows = self._query("SELECT DISTINCT trace_id, arm FROM results WHERE run_id = ?", [run_id])
        return {(trace_id, arm) for trace_id, arm in rows}

    def runs(self) -> list[dict[str, Any]]:
        """Every run, oldest first, as a dict of the ``runs`` columns.

        ``started_at`` and ``ended_at`` are UTC datetimes, ``config`` a dict, ``arms`` a list
        and ``counts`` a dict (None until the run finishes).
        """
        # Times leave DuckDB as epoch microseconds: TIMESTAMPTZ values would need pytz.
        rows = self._query(
            "SELECT run_id, epoch_us(started_at), epoch_us(ended_at), source, config, arms,"
            " counts, status FROM runs ORDER BY started_at, run_id"
        )
        return [
            {
                "run_id": run_id,
                "started_at": _from_us(started),
                "ended_at": _from_us(ended),
                "source": source,
                "config": json.loads(config) if config is not None else {},
                "arms": list(arms or ()),
                "counts": json.loads(counts) if counts is not None else None,
                "status": status,
            }
            for run_id, started, ended, source, config, arms, counts, status in rows
        ]

    def latest_run_id(self) -> str | None:
        """The run_id of the most recently started run, or None when there is none."""
        rows = self._query("SELECT run_id FROM runs ORDER BY started_at DESC, run_id DESC LIMIT 1")
        return str(rows[0][0]) if rows else None

    def close(self) -> None:
        """Close the connection (a DuckDB file is checkpointed); safe to call twice."""
        with self._lock:
            if self._con is not None:
                for appender in self._appenders.values():
                    appender.clear()
                self._appenders.clear()
                self._con.close()
                self._con = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _from_us(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1e6, UTC)


# --- the DuckDB file ---------------------------------------------------------------------------


class ResultsStore(_Results):
    """A DuckDB results file: one connection, safe to share between threads (a lock orders calls).

    Open it with :meth:`open`. The methods block, so async code goes through
    :class:`AsyncResultsWriter` or ``asyncio.to_thread``.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path) -> None:
        self.path = path
        self._con = con
        self._lock = threading.Lock()
        self._appenders = {}

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
            raise _open_error(path, exc) from None
        try:
            # Each checkpoint rewrites the key index; fewer, larger ones keep long runs fast.
            con.execute("SET checkpoint_threshold = '64MB'").complete()
            database = str(con.execute("SELECT current_database()").fetchall()[0][0])
            tables = _user_tables(con, database)
            if tables:
                _check_schema(con, database, tables, path)
            else:
                con.begin()
                for statement in _SCHEMA:
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
            [run_id, source, _json_text(config), list(arms)],
        )

    def finish_run(self, run_id: str, *, status: str, counts: Mapping[str, Any]) -> None:
        """Record how ``run_id`` ended (``done``, ``interrupted`` or ``failed``) and its counts."""
        _check_status(status)
        updated = self._query(
            "UPDATE runs SET ended_at = now(), status = ?, counts = ? WHERE run_id = ?",
            [status, _json_text(counts), run_id],
        )
        if updated[0][0] == 0:
            raise AnalysisError(f"run {run_id!r} was never started in {self.path}")

    def write(self, results: Sequence[ResultRow], traces: Sequence[TraceRow] = ()) -> None:
        """Write rows in one transaction; a key written before is replaced, never duplicated."""
        batches = {"traces": _trace_tuples(traces), "results": _result_tuples(results)}
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
                    batches = {table: _last_per_key(table, rows) for table, rows in batches.items()}
                    self._transaction(self._con, "INSERT OR REPLACE INTO", batches)
            except duckdb.Error as exc:
                raise AnalysisError(f"cannot write results to {self.path}: {exc}") from None

    def _transaction(
        self, con: duckdb.DuckDBPyConnection, verb: str, batches: dict[str, Rows]
    ) -> None:
        con.begin()
        try:
            for table, rows in batches.items():
                if rows:
                    appender = self._appender(con, verb, table)
                    try:
                        _append(appender, rows)
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


def _open_error(path: Path, exc: duckdb.Error) -> UsageError:
    text = str(exc).splitlines()[0]
    if "not a valid DuckDB database file" in text:
        return UsageError(
            f"{path} is not a shadow results store (not a DuckDB database file); "
            "give a new path or an existing results file"
        )
    if "lock" in text.lower() or "already attached" in text:
        return UsageError(
            f"{path} is in use by another writer ({text}); wait for it to finish, or write "
            "Parquet parts from several processes with --out DIR/"
        )
    return UsageError(f"cannot open results store {path}: {text}")


def _user_tables(con: duckdb.DuckDBPyConnection, database: str) -> set[str]:
    rows = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND NOT internal"
        " UNION ALL SELECT view_name FROM duckdb_views() WHERE database_name = ? AND NOT internal",
        [database, database],
    ).fetchall()
    return {str(name) for (name,) in rows}


def _check_schema(
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
    _check_version(version, path)


def _check_version(version: object, path: Path) -> None:
    if not isinstance(version, int) or version > RESULTS_SCHEMA_VERSION:
        raise UsageError(
            f"{path} was written by a newer shadow (results schema_version {version}; this "
            f"shadow reads up to {RESULTS_SCHEMA_VERSION}); upgrade shadow to read it"
        )


# --- Parquet parts (scale-out) -----------------------------------------------------------------

_MARKER: Final = "shadow-results.json"
_UNSAFE_IN_NAME: Final = re.compile(r"[^A-Za-z0-9._-]+")


def _safe_name(text: str) -> str:
    return _UNSAFE_IN_NAME.sub("_", text) or "_"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: Path, final: Path) -> None:
    """Sync ``tmp`` and rename it to ``final``: readers see all of a file or none of it."""
    _fsync(tmp)
    os.replace(tmp, final)
    _fsync(final.parent)


def _write_json(path: Path, doc: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(json.dumps(doc, default=str, ensure_ascii=False, indent=1) + "\n")
        _publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _check_marker(directory: Path) -> None:
    try:
        version = json.loads((directory / _MARKER).read_text())["schema_version"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(
            f"{directory} is not a shadow results store (no readable {_MARKER} in it)"
        ) from None
    _check_version(version, directory)


class ParquetResultsWriter(_Results):
    """Results as Parquet parts in a directory: ``--out DIR/``, for any number of writers.

    Each :meth:`write` adds ``DIR/results/part-<run_id>-<writer_id>-<seq>.parquet`` (and a
    ``DIR/traces/`` part when it has traces), written under a temporary name, synced and
    renamed, so a reader never sees half a part. Each writer keeps its own
    ``DIR/runs/<run_id>-<writer_id>.json``; no two writers touch one file, so processes on
    several hosts sharing the directory need no coordination. A key written again lands in a
    newer part, and :func:`results_relation` reads the newest version of each key.
    """

    def __init__(self, directory: str | os.PathLike[str], *, writer_id: str | None = None) -> None:
        self.directory = Path(directory)
        self.writer_id = _safe_name(
            writer_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        )
        self._lock = threading.Lock()
        self._seq = 0
        self._runs: dict[str, dict[str, Any]] = {}
        try:
            for sub in ("results", "traces", "runs"):
                (self.directory / sub).mkdir(parents=True, exist_ok=True)
            if (self.directory / _MARKER).exists():
                _check_marker(self.directory)
            else:
                marker = {"schema_version": RESULTS_SCHEMA_VERSION, "created_by": __version__}
                _write_json(self.directory / _MARKER, marker)
        except OSError as exc:
            raise UsageError(f"cannot write results into {self.directory}: {exc}") from None
        # An in-memory DuckDB stages each batch and writes it with DuckDB's own Parquet writer:
        # parts carry real MAP and LIST types, and pyarrow is not needed.
        self._con = duckdb.connect()
        self._appenders = {}
        for table, columns in _COLUMNS.items():
            self._con.execute(f"CREATE TABLE {table} ({_columns_sql(columns)})").complete()

    def start_run(
        self, run_id: str, *, source: str, config: Mapping[str, Any], arms: Sequence[str]
    ) -> None:
        """Record that this writer works on ``run_id`` (started again, it keeps its start)."""
        with self._lock:
            previous = self._runs.get(run_id)
            self._save_run(
                {
                    "run_id": run_id,
                    "writer_id": self.writer_id,
                    "started_at": previous["started_at"] if previous else _utc_now(),
                    "ended_at": None,
                    "source": source,
                    "config": json.loads(_json_text(config)),
                    "arms": list(arms),
                    "counts": None,
                    "status": "running",
                }
            )

    def finish_run(self, run_id: str, *, status: str, counts: Mapping[str, Any]) -> None:
        """Record how this writer's share of ``run_id`` ended and what it counted."""
        _check_status(status)
        with self._lock:
            doc = self._runs.get(run_id)
            if doc is None:
                raise AnalysisError(
                    f"run {run_id!r} was never started by writer {self.writer_id} "
                    f"in {self.directory}"
                )
            counts_doc = json.loads(_json_text(counts))
            self._save_run({**doc, "ended_at": _utc_now(), "status": status, "counts": counts_doc})

    def _save_run(self, doc: dict[str, Any]) -> None:
        path = self.directory / "runs" / f"{_safe_name(doc['run_id'])}-{self.writer_id}.json"
        try:
            _write_json(path, doc)
        except OSError as exc:
            raise AnalysisError(f"cannot write {path}: {exc}") from None
        self._runs[doc["run_id"]] = doc

    def write(self, results: Sequence[ResultRow], traces: Sequence[TraceRow] = ()) -> None:
        """Write a part per table and run_id; a key written again wins over its older parts."""
        batches = {
            "traces": _last_per_key("traces", _trace_tuples(traces)),
            "results": _last_per_key("results", _result_tuples(results)),
        }
        with self._lock:
            if self._con is None:
                raise AnalysisError(f"the results writer for {self.directory} is closed")
            written_at = time.time()
            for table, rows in batches.items():
                by_run: dict[str, Rows] = {}
                for row in rows:
                    by_run.setdefault(row[0], []).append(row)
                for run_id, run_rows in by_run.items():
                    self._write_part(self._con, table, run_id, run_rows, written_at)

    def _write_part(
        self, con: duckdb.DuckDBPyConnection, table: str, run_id: str, rows: Rows, when: float
    ) -> None:
        self._seq += 1
        name = f"part-{_safe_name(run_id)}-{self.writer_id}-{self._seq:06d}.parquet"
        final = self.directory / table / name
        tmp = final.with_name(f".{name}.tmp")
        appender = self._appender(con, "INSERT INTO", table)
        try:
            _append(appender, rows)
            appender.flush()
            con.execute(
                f"COPY (SELECT *, CAST({when!r} AS DOUBLE) AS _written_at FROM {table})"  # noqa: S608
                f" TO {_sql_str(str(tmp))} (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1)"
            ).complete()
            _publish(tmp, final)
        except (duckdb.Error, OSError) as exc:
            raise AnalysisError(f"cannot write {final}: {exc}") from None
        finally:
            appender.clear()
            con.execute(f"DELETE FROM {table}").complete()  # noqa: S608 (a constant)
            tmp.unlink(missing_ok=True)

    def _query(self, sql: str, params: Sequence[Any] | None = None) -> list[Any]:
        with duckdb.connect() as con:
            results_relation(con, self.directory)
            try:
                return con.execute(sql, params).fetchall()
            except duckdb.Error as exc:
                raise AnalysisError(f"results directory {self.directory}: {exc}") from None


def _utc_now() -> str:
    return datetime.now(UTC).isoformat()


def open_results(path: str | os.PathLike[str]) -> ResultsStore | ParquetResultsWriter:
    """Open ``--out`` for writing: a DuckDB file, or a directory of Parquet parts.

    A path ending in '/' or naming an existing directory gets Parquet parts.
    """
    text = os.fspath(path)
    if text.endswith(("/", os.sep)) or Path(text).is_dir():
        return ParquetResultsWriter(text)
    return ResultsStore.open(text)


# --- reading either layout ---------------------------------------------------------------------

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
        raise UsageError(f"{file} does not exist; give the results file a replay wrote (--out)")
    con.execute(f"DETACH DATABASE IF EXISTS {_ATTACHED}").complete()
    try:
        con.execute(f"ATTACH {_sql_str(text)} AS {_ATTACHED} (READ_ONLY)").complete()
        _check_schema(con, _ATTACHED, _user_tables(con, _ATTACHED), file)
    except duckdb.Error as exc:
        raise _open_error(file, exc) from None
    except UsageError:
        con.execute(f"DETACH DATABASE {_ATTACHED}").complete()
        raise
    for name in ("results", "traces", "runs"):
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM {_ATTACHED}.main.{name}"  # noqa: S608
        ).complete()


def _parquet_views(con: duckdb.DuckDBPyConnection, base: str, *, remote: bool) -> None:
    if not remote:
        if not Path(base).is_dir():
            raise UsageError(f"{base} does not exist; give the directory a replay wrote (--out)")
        _check_marker(Path(base))

    def files(sub: str, pattern: str) -> str | None:
        """The glob of a folder's files, or None for a local folder without any."""
        if not remote and not any((Path(base) / sub).glob(pattern)):
            return None
        return _sql_str(f"{base}/{sub}/{pattern}")

    for table, columns in _COLUMNS.items():
        glob = files(table, "part-*.parquet")
        if glob is None:
            sql = _empty_select(columns)
        else:
            casts = ", ".join(f"CAST({n} AS {t}) AS {n}" for n, t in columns)
            sql = (
                f"SELECT {casts} FROM read_parquet({glob}, union_by_name = true)"  # noqa: S608
                f" QUALIFY row_number() OVER (PARTITION BY {', '.join(_KEYS[table])}"
                " ORDER BY _written_at DESC NULLS LAST) = 1"
            )
        con.execute(f"CREATE OR REPLACE TEMP VIEW {table} AS {sql}").complete()
    glob = files("runs", "*.json")
    if glob is None:
        runs = _empty_select(_RUN_COLUMNS)
    else:
        runs = _MERGED_RUNS.format(glob=glob, columns=_RUN_JSON_COLUMNS)
    con.execute(f"CREATE OR REPLACE TEMP VIEW runs AS {runs}").complete()


def _empty_select(columns: Sequence[tuple[str, str]]) -> str:
    return "SELECT " + ", ".join(f"CAST(NULL AS {t}) AS {n}" for n, t in columns) + " LIMIT 0"


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
            ELSE 'done' END AS status
    FROM latest GROUP BY run_id
)
SELECT f.run_id, f.started_at, e.ended_at, f.source, f.config, f.arms,
    CAST(c.counts AS JSON) AS counts, e.status
FROM firsts AS f JOIN ends AS e USING (run_id) LEFT JOIN counts AS c USING (run_id)
"""
_RUN_JSON_COLUMNS: Final = ", ".join(f"{name}: '{sql_type}'" for name, sql_type in _RUN_COLUMNS)
