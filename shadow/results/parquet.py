"""The Parquet directory writer: results as parts that any number of processes add to.

A directory of ``DIR/results/part-*.parquet``, ``DIR/traces/part-*.parquet`` and one
``DIR/runs/<run_id>-<writer_id>.json`` per writer, marked by ``DIR/shadow-results.json``
(docs/architecture.md, "Scale-out"). No two writers touch one file, so writers on several
hosts sharing the directory need no coordination; :func:`~shadow.results.views.results_relation`
reads it back.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import duckdb

from shadow._version import __version__
from shadow.errors import AnalysisError, UsageError
from shadow.files import atomic_write, publish
from shadow.results.base import ResultsBase
from shadow.results.rows import ResultRow, TraceRow
from shadow.results.schema import (
    COLUMNS,
    MARKER,
    RESULTS_SCHEMA_VERSION,
    check_marker,
    check_status,
    columns_sql,
    sql_str,
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
from shadow.results.views import results_relation

__all__ = ["ParquetResultsWriter"]

_UNSAFE_IN_NAME: Final = re.compile(r"[^A-Za-z0-9._-]+")


def _safe_name(text: str) -> str:
    return _UNSAFE_IN_NAME.sub("_", text) or "_"


def _write_json(path: Path, doc: Mapping[str, Any]) -> None:
    text = json.dumps(doc, default=str, ensure_ascii=False, indent=1) + "\n"
    with atomic_write(path) as fh:
        fh.write(text.encode())


def _utc_now() -> str:
    return datetime.now(UTC).isoformat()


class ParquetResultsWriter(ResultsBase):
    """Results as Parquet parts in a directory (a path ending in '/'), for any number of writers.

    Each :meth:`write` adds ``DIR/results/part-<run_id>-<writer_id>-<seq>.parquet`` (and a
    ``DIR/traces/`` part when it has traces), written under a temporary name, synced and
    renamed, so a reader never sees half a part. Each writer keeps its own
    ``DIR/runs/<run_id>-<writer_id>.json``; no two writers touch one file, so processes on
    several hosts sharing the directory need no coordination. A key written again lands in a
    newer part, and :func:`~shadow.results.views.results_relation` reads the newest version
    of each key.
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
            if (self.directory / MARKER).exists():
                check_marker(self.directory)
            else:
                marker = {"schema_version": RESULTS_SCHEMA_VERSION, "created_by": __version__}
                _write_json(self.directory / MARKER, marker)
        except OSError as exc:
            raise UsageError(f"cannot write results into {self.directory}: {exc}") from None
        # An in-memory DuckDB stages each batch and writes it with DuckDB's own Parquet writer:
        # parts carry real MAP and LIST types, and pyarrow is not needed.
        self._con = duckdb.connect()
        self._appenders = Appenders()
        for table, columns in COLUMNS.items():
            self._con.execute(f"CREATE TABLE {table} ({columns_sql(columns)})").complete()

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
                    "config": json.loads(json_text(config)),
                    "arms": list(arms),
                    "counts": None,
                    "status": "running",
                }
            )

    def finish_run(self, run_id: str, *, status: str, counts: Mapping[str, Any]) -> None:
        """Record how this writer's share of ``run_id`` ended and what it counted."""
        check_status(status)
        with self._lock:
            doc = self._runs.get(run_id)
            if doc is None:
                raise AnalysisError(
                    f"run {run_id!r} was never started by writer {self.writer_id} "
                    f"in {self.directory}"
                )
            counts_doc = json.loads(json_text(counts))
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
        self.write_staged(result_tuples(results), trace_tuples(traces))

    def write_staged(self, results: Rows, traces: Rows) -> list[Path]:
        """:meth:`write` of rows already staged (:func:`~shadow.results.staging.result_tuples`,
        :func:`~shadow.results.staging.trace_tuples`); returns the parts written, traces first."""
        batches = {
            "traces": last_per_key("traces", traces),
            "results": last_per_key("results", results),
        }
        parts: list[Path] = []
        with self._lock:
            if self._con is None:
                raise AnalysisError(f"the results writer for {self.directory} is closed")
            written_at = time.time()
            for table, rows in batches.items():
                by_run: dict[str, Rows] = {}
                for row in rows:
                    by_run.setdefault(row[0], []).append(row)
                for run_id, run_rows in by_run.items():
                    parts.append(self._write_part(self._con, table, run_id, run_rows, written_at))
        return parts

    def _write_part(
        self, con: duckdb.DuckDBPyConnection, table: str, run_id: str, rows: Rows, when: float
    ) -> Path:
        self._seq += 1
        name = f"part-{_safe_name(run_id)}-{self.writer_id}-{self._seq:06d}.parquet"
        final = self.directory / table / name
        tmp = final.with_name(f".{name}.tmp")
        appender = self._appenders.get(con, "INSERT INTO", table)
        try:
            append(appender, rows)
            appender.flush()
            con.execute(
                f"COPY (SELECT *, CAST({when!r} AS DOUBLE) AS _written_at FROM {table})"  # noqa: S608
                f" TO {sql_str(str(tmp))} (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1)"
            ).complete()
            publish(tmp, final)
            return final
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
