"""capture: the sidecar that records production traffic as TraceRecords.

It will hold the ASGI reverse proxy that forwards to the live upstream and tees each exchange,
the sinks (Kafka, JSONL file), redaction, slice extraction, sampling and the disk spool used
while Kafka is unreachable. It builds on ``shadow`` (schema, config) and never slows the live path.
"""

from __future__ import annotations

__all__: list[str] = []
