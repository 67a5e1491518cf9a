"""Rows on their way into DuckDB: plain tuples, one appender per table and verb.

Rows reach DuckDB through its appender. Converting Python dicts and lists there costs about
0.25 µs per element, so slices and chunk offsets travel as JSON text (msgspec encodes them) and
DuckDB's ``from_json`` turns them into ``MAP`` and ``DOUBLE[]`` inside the insert statement.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import duckdb
import msgspec

from shadow.results.rows import ResultRow, TraceRow
from shadow.results.schema import COLUMNS, KEYS, MAP, RESULT_COLUMNS, TRACE_COLUMNS

__all__ = [
    "Appenders",
    "Rows",
    "append",
    "json_text",
    "last_per_key",
    "replace_surrogates",
    "result_tuples",
    "trace_tuples",
]

Rows = list[tuple[Any, ...]]

_ENCODER = msgspec.json.Encoder()
_RESULT_FIELDS = operator.attrgetter(*(name for name, _ in RESULT_COLUMNS))
_TRACE_FIELDS = operator.attrgetter(*(name for name, _ in TRACE_COLUMNS))
# from_json with a structure reads these twice as fast as a CAST of the JSON text.
_FROM_JSON: Final = {MAP: """'"MAP(VARCHAR, VARCHAR)"'""", "DOUBLE[]": """'["DOUBLE"]'"""}
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
    for table, columns in COLUMNS.items()
}
"""Per table: the appender's column types (MAP and lists as JSON text) and the converting SELECT."""


def _json_map(slices: Mapping[str, str]) -> str:
    return _ENCODER.encode(slices if type(slices) is dict else dict(slices)).decode()


def _json_list(values: Sequence[float] | None) -> str | None:
    if values is None:
        return None
    return _ENCODER.encode(values if type(values) in (list, tuple) else list(values)).decode()


def result_tuples(rows: Sequence[ResultRow]) -> Rows:
    """``results`` rows as the appender takes them."""
    out = []
    for row in rows:
        v = _RESULT_FIELDS(row)
        out.append((*v[:4], _json_map(v[4]), *v[5:19], _json_list(v[19]), *v[20:]))
    return out


def trace_tuples(rows: Sequence[TraceRow]) -> Rows:
    """``traces`` rows as the appender takes them."""
    out = []
    for row in rows:
        v = _TRACE_FIELDS(row)
        out.append((*v[:4], _json_map(v[4]), *v[5:]))
    return out


def last_per_key(table: str, rows: Rows) -> Rows:
    """Keep the last row of each key: one statement cannot write a key twice."""
    width = len(KEYS[table])
    latest = {row[:width]: row for row in rows}
    return rows if len(latest) == len(rows) else list(latest.values())


_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def append(appender: duckdb.Appender, rows: Rows) -> None:
    """Buffer ``rows``; text with lone surrogates (from JSON escapes) gets U+FFFD instead.

    DuckDB refuses such text, and a model's odd output must not fail a whole batch.
    """
    try:
        appender.append_rows(rows)
    except duckdb.InvalidInputException as exc:
        appender.clear()
        if "surrogate" not in str(exc):
            raise
        appender.append_rows(replace_surrogates(rows))


def replace_surrogates(rows: Rows) -> Rows:
    """``rows`` with U+FFFD for every lone surrogate in their text (what UTF-8 cannot hold)."""
    return [tuple(_SURROGATE.sub("\ufffd", v) if type(v) is str else v for v in r) for r in rows]


def json_text(value: Mapping[str, Any]) -> str:
    """A run's config or counts as JSON text (sorted keys; what JSON cannot hold as str)."""
    return json.dumps(dict(value), default=str, ensure_ascii=False, sort_keys=True)


class Appenders:
    """The appenders of one connection, made on first use: one per verb and table."""

    def __init__(self) -> None:
        self._made: dict[tuple[str, str], duckdb.Appender] = {}

    def get(self, con: duckdb.DuckDBPyConnection, verb: str, table: str) -> duckdb.Appender:
        """The appender that runs ``verb`` (``INSERT INTO``, ...) on ``table``."""
        appender = self._made.get((verb, table))
        if appender is None:
            types, select = _STAGED[table]
            dml = f"{verb} {table} SELECT {select} FROM appender_data"  # noqa: S608 (constants)
            appender = self._made[verb, table] = con.query_appender(dml, types)
        return appender

    def clear(self) -> None:
        """Drop every appender and what it buffered (before the connection closes)."""
        for appender in self._made.values():
            appender.clear()
        self._made.clear()
