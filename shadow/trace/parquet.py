"""Read and write TraceRecords as Parquet files.

Two layouts are read: TraceRecord fields as nested columns (as :func:`write_parquet` writes
them; maps are lists of ``{key, value}`` structs, the Parquet map layout), or one ``record``
column of JSON text. The schema is derived from TraceRecord's type (:func:`parquet_schema`), so
the two cannot drift apart. polars is imported only when a Parquet file is read or written.
"""

from __future__ import annotations

import functools
from collections.abc import Generator, Iterable
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi

from shadow.errors import TraceError, UsageError
from shadow.files import publish, temp_path
from shadow.trace.decoding import Row, decode_row
from shadow.trace.record import TraceRecord, convert

__all__ = ["parquet_rows", "parquet_schema", "write_parquet"]

_SLICE_ROWS = 4096  # rows converted per slice of the in-memory frame


def parquet_rows(path: str | Path) -> Generator[Row]:
    """Decode each row of a Parquet file into a :class:`Row` with origin ``file:row`` (1-based).

    The file is loaded into memory (columnar, about its uncompressed size); rows are converted
    slice by slice as they are asked for.

    Raises:
        UsageError: polars cannot read the file (on the first ``next``).
    """
    import polars as pl

    path = Path(path)
    try:
        frame = pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise UsageError(f"cannot read Parquet file {path}: {reason}") from None
    json_form = "record" in frame.columns and "trace_id" not in frame.columns
    row = 0
    for chunk in frame.iter_slices(_SLICE_ROWS):
        if json_form:
            for value in chunk.get_column("record").to_list():
                row += 1
                yield _from_json(f"{path}:{row}", value)
        else:
            for values in chunk.iter_rows(named=True):
                row += 1
                yield _from_columns(f"{path}:{row}", values)


def _from_json(origin: str, value: object) -> Row:
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, bytes):
        return Row(origin, b"", f"invalid TraceRecord: the record column is {value!r}, not JSON")
    return decode_row(origin, value)


def _from_columns(origin: str, values: dict[str, Any]) -> Row:
    try:
        return Row(origin, b"", convert(_plain(values, _record_type())))
    except TraceError as exc:
        return Row(origin, msgspec.json.encode(values, enc_hook=str), str(exc))


@functools.cache
def _record_type() -> mi.StructType:
    info = mi.type_info(TraceRecord)
    assert isinstance(info, mi.StructType)
    return info


def _plain(value: Any, kind: mi.Type) -> Any:
    """A Parquet value in the JSON shape that ``kind`` (part of TraceRecord's type) expects.

    Nulls in structs and maps are dropped (an absent optional field means its default, and maps
    stored as structs fill keys a row lacks with null), and lists of ``{key, value}`` structs
    (the Parquet map layout) become dicts. Anything else is left for msgspec to judge.
    """
    if isinstance(kind, mi.UnionType):
        kind = next(k for k in kind.types if not isinstance(k, mi.NoneType))
    if isinstance(kind, mi.StructType) and isinstance(value, dict):
        fields = {f.encode_name: f.type for f in kind.fields}
        return {
            k: _plain(v, fields[k]) if k in fields else v for k, v in value.items() if v is not None
        }
    if isinstance(kind, mi.DictType):
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if v is not None}
        if isinstance(value, list) and all(
            isinstance(e, dict) and e.keys() == {"key", "value"} for e in value
        ):
            return {e["key"]: e["value"] for e in value if e["value"] is not None}
    if isinstance(kind, mi.ListType) and isinstance(value, list):
        return [_plain(v, kind.item_type) for v in value]
    return value


def write_parquet(path: str | Path, records: Iterable[TraceRecord]) -> int:
    """Write records to ``path`` as nested Parquet columns, atomically; return how many.

    One column per TraceRecord field, structs for nested messages, and header/slice maps as lists
    of ``{key, value}`` structs; every file has the same schema whatever its records hold.
    """
    import polars as pl

    path = Path(path)
    rows = [_row(record) for record in records]
    frame = pl.DataFrame(rows, schema=parquet_schema(), orient="row")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        frame.write_parquet(tmp)
        publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(rows)


def _row(value: Any) -> Any:
    if isinstance(value, msgspec.Struct):
        return {name: _row(getattr(value, name)) for name in value.__struct_fields__}
    if isinstance(value, dict):
        return [{"key": k, "value": v} for k, v in value.items()]
    if isinstance(value, list):
        return [_row(v) for v in value]
    return value


def parquet_schema() -> dict[str, Any]:
    """The polars schema of a TraceRecord Parquet file, derived from TraceRecord's type."""
    return {f.encode_name: _dtype(f.type) for f in _record_type().fields}


def _dtype(kind: mi.Type) -> Any:
    import polars as pl

    if isinstance(kind, mi.UnionType):
        (only,) = [k for k in kind.types if not isinstance(k, mi.NoneType)]
        return _dtype(only)
    if isinstance(kind, mi.StrType):
        return pl.String()
    if isinstance(kind, mi.IntType):
        return pl.Int64()
    if isinstance(kind, mi.FloatType):
        return pl.Float64()
    if isinstance(kind, mi.BoolType):
        return pl.Boolean()
    if isinstance(kind, mi.ListType):
        return pl.List(_dtype(kind.item_type))
    if isinstance(kind, mi.DictType):
        entry = {"key": _dtype(kind.key_type), "value": _dtype(kind.value_type)}
        return pl.List(pl.Struct(entry))
    if isinstance(kind, mi.StructType):
        return pl.Struct({f.encode_name: _dtype(f.type) for f in kind.fields})
    raise TypeError(f"no Parquet type for {kind!r}")  # a new TraceRecord field type: add it here
