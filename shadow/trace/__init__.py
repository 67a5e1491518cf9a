"""Traces: the TraceRecord v1 contract and the files that hold records.

:mod:`~shadow.trace.record` is the record itself (one captured exchange); the other modules
read and write it: JSONL (:mod:`~shadow.trace.jsonl`) and Parquet (:mod:`~shadow.trace.parquet`)
files, through one decoding loop (:mod:`~shadow.trace.decoding`) that keeps what failed to
decode (:mod:`~shadow.trace.deadletter`); the file sources (:mod:`~shadow.trace.readers`) that
implement the :class:`TraceSource` protocol (:mod:`~shadow.trace.source`); and importers of
public trace formats (:mod:`~shadow.trace.azure`, loaded only by ``shadow import``).
"""

from __future__ import annotations

from shadow.trace.deadletter import DeadLetterFile
from shadow.trace.decoding import Row, RowReader, Window
from shadow.trace.jsonl import read_jsonl, write_jsonl
from shadow.trace.parquet import write_parquet
from shadow.trace.readers import JsonlSource, ParquetSource
from shadow.trace.record import (
    SCHEMA_VERSION,
    HttpRequest,
    HttpResponse,
    Timing,
    TraceRecord,
    Usage,
    decode,
    encode,
)
from shadow.trace.source import Position, SourceItem, TraceSource

__all__ = [
    "SCHEMA_VERSION",
    "DeadLetterFile",
    "HttpRequest",
    "HttpResponse",
    "JsonlSource",
    "ParquetSource",
    "Position",
    "Row",
    "RowReader",
    "SourceItem",
    "Timing",
    "TraceRecord",
    "TraceSource",
    "Usage",
    "Window",
    "decode",
    "encode",
    "read_jsonl",
    "write_jsonl",
    "write_parquet",
]
