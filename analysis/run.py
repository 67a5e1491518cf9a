"""One replay run, read back from a results store: summaries by arm and slice, pairs, repricing.

:func:`open_run` puts the ``results``, ``traces`` and ``runs`` views of
:func:`shadow.results.views.results_relation` on an in-memory DuckDB connection (either layout: a
DuckDB file or a Parquet directory) and adds ``run_results`` (every attempt of the chosen run)
and ``final_results`` (each trace's final attempt per arm; :mod:`analysis.sql`).

Figures follow ``docs/architecture.md``, "Metric definitions": they are per request (one
trace on one arm with all its attempts, the ``requests`` view of :mod:`analysis.sql`): ``n``
counts requests the breaker or budget did not skip, ``ok_rate`` the share that eventually
succeeded; percentiles are ``quantile_cont`` (linear interpolation, numpy's default) over
successful requests, timed from the trace's scheduled send to the last byte of the successful
attempt; cost sums every attempt, and cost per success divides that sum by the number of
successful requests. SQL text here is built from constants and
quoted identifiers; values are bound as parameters.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any, Final

import duckdb
import numpy as np
import polars as pl

from analysis.cost import PRICE_COLUMNS, REPRICED_COST_SQL, price_rows
from analysis.embedders.base import Embedder
from analysis.pairs import divergent
from analysis.slicing import (
    EXPR_SLICES,
    ComputedSlices,
    SliceExpr,
    evaluate_slices,
    install_slices,
    parse_slice_expr,
)
from analysis.sql import (
    FIGURES_SQL,
    FINAL_RESULTS,
    FINAL_RESULTS_SQL,
    NO_SLICE,
    REQUESTS,
    REQUESTS_SQL,
    REQUESTS_UNRETRIED_SQL,
    SUMMARY_COLUMNS,
    check_slice_names,
    ident,
    sql_literal,
)
from shadow.errors import AnalysisError, UsageError
from shadow.replay.pricing import PricingTable
from shadow.results.rows import ARMS
from shadow.results.views import results_relation

__all__ = ["NoRunError", "Run", "open_run"]


class NoRunError(UsageError):
    """The results store holds no run yet (the CLI adds how to write one)."""


_POLARS_TYPES: Final[dict[str, Any]] = {
    "BOOLEAN": pl.Boolean,
    "TINYINT": pl.Int8,
    "SMALLINT": pl.Int16,
    "INTEGER": pl.Int32,
    "BIGINT": pl.Int64,
    "HUGEINT": pl.Float64,
    "UBIGINT": pl.UInt64,
    "FLOAT": pl.Float32,
    "DOUBLE": pl.Float64,
    "VARCHAR": pl.String,
}


def _frame(result: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """A query result as a polars DataFrame (without pyarrow: rows, typed by the SQL types)."""
    description = result.description or []
    rows = result.fetchall()
    schema = {str(d[0]): _POLARS_TYPES.get(str(d[1])) for d in description}
    return pl.DataFrame(rows, schema=schema, orient="row", infer_schema_length=None)


class Run:
    """One run of a results store, on its own in-memory DuckDB connection.

    Views: ``results``, ``traces`` and ``runs`` (the whole store), ``run_results`` (every
    attempt of this run; after :meth:`reprice`, with the recomputed ``cost_usd``),
    ``final_results`` (each trace's last attempt per arm) and ``requests`` (one row per trace
    and arm, all attempts together). Slices computed with :meth:`add_slices` are in the
    ``slices`` map of ``run_results`` and every view over it.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        *,
        path: str,
        run_id: str,
        unknown_models: frozenset[str] = frozenset(),
    ) -> None:
        self._con = con
        self._slice_names: list[str] | None = None
        self._computed: ComputedSlices | None = None
        self.path = path
        self.run_id = run_id
        self.unknown_models = unknown_models
        """Models of this run that the pricing table of :meth:`reprice` had no price for."""

    def sql(self, query: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        """Run ``query`` (views results, traces, runs, run_results) and return a DataFrame."""
        try:
            return _frame(self._con.execute(query, params))
        except duckdb.Error as exc:
            raise _query_error(self.path, exc) from None

    def records(self, query: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """Run ``query`` and return its rows as dicts of Python values (lists and maps kept)."""
        try:
            result = self._con.execute(query, params)
            names = [str(d[0]) for d in result.description or []]
            return [dict(zip(names, row, strict=True)) for row in result.fetchall()]
        except duckdb.Error as exc:
            raise _query_error(self.path, exc) from None

    def columns(self, query: str, params: Sequence[Any] | None = None) -> dict[str, np.ndarray]:
        """Run ``query`` and return each column as a numpy array (a NULL is NaN in a numeric or
        boolean column, which then holds floats, and None in any other)."""
        try:
            found = self._con.execute(query, params).fetchnumpy()
        except duckdb.Error as exc:
            raise _query_error(self.path, exc) from None
        return {str(name): _unmasked(array) for name, array in found.items()}

    def summary(self, by: Sequence[str] = ()) -> pl.DataFrame:
        """One row per (slice values..., arm) with the figures of ``shadow analyze``.

        Args:
            by: slice names (keys of the ``slices`` map); a row without one of them groups
                under :data:`NO_SLICE`. The slice columns come first, named as given.
        """
        by = list(by)
        check_slice_names(by)
        self.check_slices(by)
        keys = [
            f"coalesce(slices[${i + 1}], ${len(by) + 1}) AS {ident(name)}"
            for i, name in enumerate(by)
        ]
        groups = ", ".join([*(ident(name) for name in by), "arm"])
        query = (
            f"SELECT {', '.join([*(ident(n) for n in by), *SUMMARY_COLUMNS])} FROM ("
            f"SELECT {', '.join([*keys, 'arm'])}, {FIGURES_SQL} FROM {REQUESTS}"
            f" GROUP BY {groups}) ORDER BY {groups}"
        )
        return self.sql(query, [*by, NO_SLICE] if by else None)

    def slice_names(self) -> list[str]:
        """The slice names (keys of ``slices``) that any attempt of this run has, sorted.

        Read once per Run (a scan of every attempt): analyze, the gate and the report all check
        their slices against it."""
        if self._slice_names is None:
            rows = self.records(
                "SELECT DISTINCT unnest(map_keys(slices)) AS name FROM run_results ORDER BY name"
            )
            names = {str(row["name"]) for row in rows}
            names.update(self._computed.names if self._computed is not None else ())
            self._slice_names = sorted(names)
        return list(self._slice_names)

    def _has_slice(self, name: str) -> bool:
        """True when an attempt of this run has slice ``name``."""
        if self._slice_names is not None:
            return name in self._slice_names
        query = "SELECT 1 AS one FROM run_results WHERE map_contains(slices, $1) LIMIT 1"
        return bool(self.records(query, [name]))

    def add_slices(self, exprs: Sequence[SliceExpr | str]) -> Run:
        """Add slices computed from each trace's stored request (:mod:`analysis.slicing`).

        Each is a :class:`SliceExpr` or its ``NAME=EXPR`` text, e.g.
        ``messages=json_array_length(request_body->'messages')``; the new names can then be
        used in ``by`` (and in gate rules' ``by``). Returns this Run. A later call replaces
        the slices of an earlier one.

        Raises:
            UsageError: a malformed ``NAME=EXPR`` or an expression DuckDB cannot evaluate,
                naming the slice (setting ``slice``).
        """
        parsed = [e if isinstance(e, SliceExpr) else parse_slice_expr(e) for e in exprs]
        if parsed:
            self._use_computed(evaluate_slices(self.path, self.run_id, parsed))
        return self

    def _use_computed(self, computed: ComputedSlices) -> None:
        install_slices(self._con, computed)
        _run_views(self._con, None, computed=True)
        self._computed = computed
        self._slice_names = None

    def check_slices(self, by: Sequence[str]) -> None:
        """Raise :class:`UsageError` (setting ``by``) naming the run's slices when ``by`` names
        one that no attempt of this run has: grouping by it would put every row under
        :data:`NO_SLICE`. A run without attempts has nothing to group, and accepts any."""
        if not by:
            return
        computed = self._computed.names if self._computed is not None else ()
        # Each name is found at the first attempt that has it (no scan of the whole run);
        # only a name no attempt has reads every slice name, for the message.
        if all(name in computed or self._has_slice(name) for name in by):
            return
        known = self.slice_names()
        missing = [name for name in by if name not in known]
        if missing and self.records("SELECT 1 AS one FROM run_results LIMIT 1"):
            raise UsageError(
                f"by has {missing[0]!r}, a slice run {self.run_id} does not have; its slices "
                f"are: {', '.join(known) or 'none'}",
                setting="by",
            )

    def pairs(self, arm: str = "candidate", against: str = "baseline") -> pl.DataFrame:
        """One row per trace that has a first attempt (attempt 0) on both arms.

        Columns: ``trace_id``, then ``latency_ms``, ``ok``, ``cost_usd`` and ``output_text``
        of each arm, prefixed ``<against>_`` and ``<arm>_``.
        """
        for name in (arm, against):
            if name not in ARMS:
                raise UsageError(f"arm is {name!r}; it must be one of {', '.join(sorted(ARMS))}")
        if arm == against:
            raise UsageError(f"pairs needs two different arms; both are {arm!r}")
        fields = ("latency_ms", "ok", "cost_usd", "output_text")
        columns = ", ".join(
            f"{side}.{f} AS {ident(f'{name}_{f}')}"
            for side, name in (("b", against), ("c", arm))
            for f in fields
        )
        query = (
            f"SELECT b.trace_id, {columns} FROM run_results AS b"
            " JOIN run_results AS c ON c.trace_id = b.trace_id AND c.attempt = 0"
            " AND c.arm = $2 WHERE b.attempt = 0 AND b.arm = $1 ORDER BY b.trace_id"
        )
        return self.sql(query, [against, arm])

    def divergent(
        self, k: int = 10, *, arm: str = "candidate", embedder: Embedder | None = None
    ) -> pl.DataFrame:
        """The ``k`` traces whose output on ``arm`` diverges most from the baseline's, with
        both texts: lexical, or semantic with ``embedder`` (e.g.
        ``analysis.load_embedder("auto")``; see :mod:`analysis.divergence`)."""
        return divergent(self, k, arm=arm, embedder=embedder)

    def reprice(self, table: PricingTable) -> Run:
        """A new Run of this run whose ``cost_usd`` is recomputed from tokens with ``table``.

        Models are matched as :meth:`PricingTable.price` matches them. A row whose model has
        no price (or no model) gets a NULL cost; the unknown names are in ``unknown_models``.
        The views ``results`` keeps the stored costs; only ``run_results`` is repriced.
        """
        models = [
            str(m)
            for (m,) in self._con.execute(
                "SELECT DISTINCT model FROM run_results WHERE model IS NOT NULL"
            ).fetchall()
        ]
        prices, unknown = price_rows(table, models)  # every tier: analysis.cost
        con = _connect(self.path)
        con.execute(f"CREATE TEMP TABLE prices ({PRICE_COLUMNS})").complete()
        if prices:
            con.executemany("INSERT INTO prices VALUES (?, ?, ?, ?, ?, ?)", prices)
        _run_views(
            con,
            "SELECT r.* REPLACE"
            f" (CASE WHEN p.model IS NULL THEN NULL ELSE {REPRICED_COST_SQL} END AS cost_usd)"
            " FROM results AS r ASOF LEFT JOIN prices AS p ON p.model = r.model"
            " AND coalesce(r.prompt_tokens, 0) > p.above_tokens"
            f" WHERE r.run_id = {sql_literal(self.run_id)}",
        )
        run = Run(con, path=self.path, run_id=self.run_id, unknown_models=frozenset(unknown))
        if self._computed is not None:
            run._use_computed(self._computed)
        return run

    def close(self) -> None:
        """Close the DuckDB connection; safe to call twice."""
        self._con.close()

    def __repr__(self) -> str:
        return f"<Run {self.run_id!r} of {self.path}>"


def _query_error(path: str, exc: duckdb.Error) -> AnalysisError | UsageError:
    """A failed query, in one line: a store that cannot be read is bad input (exit 2)."""
    first = str(exc).splitlines()[0]
    if isinstance(exc, duckdb.IOException | duckdb.InvalidInputException):
        return UsageError(f"cannot read the results in {path}: {first}; is a part damaged?")
    return AnalysisError(f"query on {path}: {first}")


_STORED: Final = "stored_run_results"
"""The run's attempts as stored (or repriced), before computed slices are added."""


def _run_views(
    con: duckdb.DuckDBPyConnection, run_results: str | None, *, computed: bool = False
) -> None:
    """``run_results`` as the query ``run_results`` (None: keep the stored one), with the
    computed slices of :data:`~analysis.slicing.EXPR_SLICES` added when ``computed``, and the
    final-attempt and request views over it."""
    if run_results is not None:
        con.execute(f"CREATE OR REPLACE TEMP VIEW {_STORED} AS {run_results}").complete()
    select = f"SELECT * FROM {_STORED}"
    if computed:  # a computed slice replaces a stored one of the same name (map_concat)
        select = (
            "SELECT r.* REPLACE (CASE WHEN e.slices IS NULL THEN r.slices"
            " ELSE map_concat(r.slices, e.slices) END AS slices)"
            f" FROM {_STORED} AS r LEFT JOIN {EXPR_SLICES} AS e ON e.trace_id = r.trace_id"
        )
    con.execute(f"CREATE OR REPLACE TEMP VIEW run_results AS {select}").complete()
    con.execute(f"CREATE OR REPLACE TEMP VIEW {FINAL_RESULTS} AS {FINAL_RESULTS_SQL}").complete()
    # Most runs retry nothing: their requests are their rows, read without the retry join.
    retried = con.execute(f"SELECT 1 FROM {_STORED} WHERE attempt > 0 LIMIT 1").fetchall()
    body = REQUESTS_SQL if retried else REQUESTS_UNRETRIED_SQL
    con.execute(f"CREATE OR REPLACE TEMP VIEW {REQUESTS} AS {body}").complete()


def _unmasked(array: Any) -> np.ndarray:
    """A fetched column without its mask: NaN (numbers, booleans) or None in place of NULL."""
    if not isinstance(array, np.ma.MaskedArray):
        return np.asarray(array)
    if array.dtype.kind in "biuf":
        return np.asarray(np.ma.filled(array.astype(np.float64), np.nan))
    return np.asarray(np.ma.filled(array.astype(object), None))


def _connect(path: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    # Never mixed into --format json output. A Jupyter kernel without ipywidgets refuses the
    # setting, and the bar is already off there.
    with contextlib.suppress(duckdb.InvalidInputException):
        con.execute("SET enable_progress_bar = false")
    try:
        results_relation(con, path)
    except BaseException:
        con.close()
        raise
    return con


def open_run(path: str | os.PathLike[str], run_id: str | None = None) -> Run:
    """Open run ``run_id`` (default: the latest started) of the results store at ``path``.

    ``path`` is a DuckDB results file or a Parquet results directory.

    Raises:
        NoRunError: the store holds no run yet.
        UsageError: ``path`` is missing or not a results store, or it does not hold ``run_id``.
    """
    text = os.fspath(path)
    con = _connect(text)
    try:
        if run_id is None:
            rows = con.execute(
                "SELECT run_id FROM (SELECT run_id, started_at FROM runs UNION ALL"
                " SELECT DISTINCT run_id, NULL FROM results)"
                " ORDER BY started_at DESC NULLS LAST, run_id DESC LIMIT 1"
            ).fetchall()
            if not rows:
                raise NoRunError(f"{text} holds no run yet; replay into it first")
            run_id = str(rows[0][0])
        else:
            found = con.execute(
                "SELECT count(*) FROM (SELECT run_id FROM runs WHERE run_id = $1"
                " UNION ALL SELECT run_id FROM results WHERE run_id = $1)",
                [run_id],
            ).fetchall()[0][0]
            if not found:
                known = [str(r) for (r,) in con.execute("SELECT run_id FROM runs").fetchall()]
                raise UsageError(
                    f"{text} has no run {run_id!r}; its runs are: {', '.join(known) or 'none'}"
                )
        _run_views(con, f"SELECT * FROM results WHERE run_id = {sql_literal(run_id)}")
    except BaseException:
        con.close()
        raise
    return Run(con, path=text, run_id=run_id)
