"""Slices computed at analysis time: ``NAME=EXPR``, a DuckDB expression over the stored request.

A run captured last week can be cut a new way without capturing it again: each
:class:`SliceExpr` is a SQL expression evaluated once per trace of the run over the ``traces``
table of the results store (columns ``trace_id``, ``captured_at``, ``service``, ``slices``,
``method``, ``path``, ``request_body`` (the request's JSON as text), ``production_status``,
``production_latency_ms``, ``production_model``), e.g.
``json_array_length(request_body->'messages')`` or ``request_body->>'$.metadata.user'``. Its value,
as text cut to 128 characters, becomes a slice of every attempt of that trace (NULL: the trace
lacks the slice); a computed slice replaces a stored one of the same name.

Safety: the expressions run on a connection of their own (:func:`evaluate_slices`), an
in-memory database that holds only a copy of this run's ``traces`` rows, with the store
detached, file and network access disabled (``enable_external_access = false``) and the
configuration locked; each text must be one expression (a statement, a second statement or a
``FROM`` of its own is refused by the parser). Only the values come back to the run's
connection (:func:`install_slices`), as bound parameters.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import duckdb

from shadow.errors import UsageError
from shadow.results.views import results_relation

__all__ = [
    "EXPR_SLICES",
    "MAX_VALUE_CHARS",
    "ComputedSlices",
    "SliceExpr",
    "evaluate_slices",
    "install_slices",
    "parse_slice_expr",
]

MAX_VALUE_CHARS: Final = 128
"""A computed value is cut to this many characters (as capture cuts its labels)."""

EXPR_SLICES: Final = "_expr_slices"
"""The temporary table of computed slices on a run's connection: ``trace_id, slices``."""

_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


@dataclass(frozen=True, slots=True)
class SliceExpr:
    """One slice computed at analysis time: its name and its DuckDB expression."""

    name: str
    expr: str


@dataclass(frozen=True, slots=True)
class ComputedSlices:
    """The values of some computed slices: one list per name, aligned with ``trace_ids``."""

    names: tuple[str, ...]
    trace_ids: list[str]
    values: tuple[list[str | None], ...]


def parse_slice_expr(text: str) -> SliceExpr:
    """``NAME=EXPR`` as a :class:`SliceExpr`; :class:`UsageError` (setting ``slice``) if not."""
    name, sep, expr = text.partition("=")
    name, expr = name.strip(), expr.strip()
    if not sep or not _NAME.fullmatch(name) or not expr:
        raise UsageError(
            f"slice has {text!r}; give NAME=EXPR, a name of letters, digits, '_', '.', '-' and "
            "a DuckDB expression over the run's traces, e.g. "
            "messages=\"json_array_length(request_body->'messages')\"",
            setting="slice",
        )
    return SliceExpr(name, expr)


def evaluate_slices(
    path: str | os.PathLike[str], run_id: str, exprs: Sequence[SliceExpr]
) -> ComputedSlices:
    """Evaluate ``exprs`` over the traces of run ``run_id`` of the store at ``path``.

    Raises:
        UsageError: a name given twice, or an expression DuckDB cannot evaluate (one line
            naming the slice and DuckDB's message; setting ``slice``).
    """
    names = [e.name for e in exprs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(
            f"slice {twice[0]!r} is given twice; name each slice once", setting="slice"
        )
    con = _sandbox(path, run_id)
    try:
        rows = con.execute("SELECT trace_id FROM traces ORDER BY trace_id").fetchall()
        trace_ids = [str(t) for (t,) in rows]
        values = tuple(_values(con, e) for e in exprs)
    finally:
        con.close()
    return ComputedSlices(tuple(names), trace_ids, values)


def install_slices(con: duckdb.DuckDBPyConnection, computed: ComputedSlices) -> None:
    """Create :data:`EXPR_SLICES` (``trace_id``, ``slices`` map) on a run's connection."""
    n = len(computed.names)
    columns = ", ".join(f"unnest(${i + 2}::VARCHAR[]) AS v{i}" for i in range(n))
    entries = ", ".join(f"{{'key': ${n + i + 2}::VARCHAR, 'value': v{i}}}" for i in range(n))
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {EXPR_SLICES} AS SELECT trace_id,"
        f" map_from_entries(list_filter([{entries}], lambda e: e.value IS NOT NULL)) AS slices"
        f" FROM (SELECT unnest($1::VARCHAR[]) AS trace_id, {columns})",
        [computed.trace_ids, *computed.values, *computed.names],
    ).complete()


def _sandbox(path: str | os.PathLike[str], run_id: str) -> duckdb.DuckDBPyConnection:
    """An in-memory connection holding only run ``run_id``'s traces, with no way out."""
    con = duckdb.connect()
    try:
        with contextlib.suppress(duckdb.InvalidInputException):
            con.execute("SET enable_progress_bar = false")
        results_relation(con, path)
        con.execute(
            "CREATE TABLE run_traces AS SELECT * FROM traces WHERE run_id = $1", [run_id]
        ).complete()
        for view in ("results", "traces", "runs"):
            con.execute(f"DROP VIEW IF EXISTS {view}").complete()
        con.execute("DETACH DATABASE IF EXISTS shadow_results").complete()
        con.execute("ALTER TABLE run_traces RENAME TO traces").complete()
        for setting in (
            "autoinstall_known_extensions = false",
            "autoload_known_extensions = false",
            "enable_external_access = false",
            "lock_configuration = true",
        ):
            con.execute(f"SET {setting}").complete()
    except BaseException:
        con.close()
        raise
    return con


def _values(con: duckdb.DuckDBPyConnection, slice_expr: SliceExpr) -> list[str | None]:
    # On lines of their own, so a trailing "--" comment in the expression ends at its line.
    query = (
        f"SELECT left(CAST((\n{slice_expr.expr}\n) AS VARCHAR), {MAX_VALUE_CHARS})"
        " FROM traces ORDER BY trace_id"
    )
    try:
        statements = con.extract_statements(query)
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            raise _bad(slice_expr, "it must be one expression, not statements")
        rows = con.execute(query).fetchall()
    except duckdb.Error as exc:
        raise _bad(slice_expr, str(exc).splitlines()[0]) from None
    return [None if v is None else str(v) for (v,) in rows]


def _bad(slice_expr: SliceExpr, why: str) -> UsageError:
    return UsageError(f"slice {slice_expr.name}={slice_expr.expr}: {why}", setting="slice")
