"""capture: the sidecar that records production traffic as TraceRecords.

A reverse proxy (:class:`Sidecar`, served by :mod:`capture.live`, or the ASGI
:class:`CaptureMiddleware` in-process) forwards to the live upstream untouched and tees each
exchange, redacted, through a bounded queue and a disk spool to a sink (Kafka or a JSONL
file). It builds on ``shadow`` (schema, config) and never slows or fails the live path
because of its own trouble.
"""

from __future__ import annotations

from capture.middleware import CaptureMiddleware
from capture.redact import Redactor
from capture.sampling import Sampler
from capture.sidecar import Sidecar
from capture.sinks import FileSink, TraceSink
from capture.slices import SliceExtractor
from capture.spool import Spool
from capture.tee import DrainReport, Tee
from shadow.errors import SinkError
from shadow.kafka.producer import KafkaSink

__all__ = [
    "CaptureMiddleware",
    "DrainReport",
    "FileSink",
    "KafkaSink",
    "Redactor",
    "Sampler",
    "Sidecar",
    "SinkError",
    "SliceExtractor",
    "Spool",
    "Tee",
    "TraceSink",
]
