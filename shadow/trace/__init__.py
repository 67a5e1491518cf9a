"""Traces: the TraceRecord v1 contract and the files that hold records.

:mod:`~shadow.trace.record` is the record itself (one captured exchange); the other modules
read and write it (JSONL, Parquet), keep what failed to decode (:mod:`~shadow.trace.deadletter`)
and import public trace formats (:mod:`~shadow.trace.azure`, loaded only by ``shadow import``).
"""

from __future__ import annotations

from shadow.trace.deadletter import DeadLetterFile
from shadow.trace.jsonl import read_jsonl, write_jsonl
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

__all__ = [
    "SCHEMA_VERSION",
    "DeadLetterFile",
    "HttpRequest",
    "HttpResponse",
    "Timing",
    "TraceRecord",
    "Usage",
    "decode",
    "encode",
    "read_jsonl",
    "write_jsonl",
]
