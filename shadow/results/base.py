"""What both results layouts share: reading runs and done keys back, and closing.

:class:`~shadow.results.store.ResultsStore` (a DuckDB file) and
:class:`~shadow.results.parquet.ParquetResultsWriter` (a directory of Parquet parts) each hold
a DuckDB connection, a lock and the appenders that stage rows; they differ in how a query
reaches the rows, which each provides as :meth:`ResultsBase._query`.
"""

from __future__ import annotations

import json
import threading
from abc import abstractmethod
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import duckdb

from shadow.closing import Closing
from shadow.results.staging import Appenders

__all__ = ["ResultsBase"]


class ResultsBase(Closing):
    """The reading methods and lifetime of both layouts; subclasses provide ``_query``."""

    _con: duckdb.DuckDBPyConnection | None
    _appenders: Appenders
    _lock: threading.Lock

    @abstractmethod
    def _query(self, sql: str, params: Sequence[Any] | None = None) -> list[Any]:
        """Run ``sql`` over the store's ``results``, ``traces`` and ``runs``; all rows."""

    def done_keys(self, run_id: str) -> set[tuple[str, str]]:
        """The ``(trace_id, arm)`` pairs of ``run_id`` that have a result: what a resume skips.

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
                self._appenders.clear()
                self._con.close()
                self._con = None


def _from_us(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1e6, UTC)
