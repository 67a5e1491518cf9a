"""The one exception tree of shadow.

::

    ShadowError                 anything shadow raises on purpose; the CLI prints it in one line
    ├── UsageError              bad input from the user: flags, files, config (exit 2)
    │   ├── ConfigError         a shadow.toml key with a bad value
    │   └── TraceError          a TraceRecord or trace file that fails validation
    ├── BrokerError             the embedded broker could not start or stop
    ├── CaptureError            the capture sidecar (later: sinks, spool)
    ├── ReplayError             the replayer and live mirror
    ├── AnalysisError           the analyzer and results store
    └── DemoError               a step of `shadow demo` (in shadow.demo.processes; names the log)

Third-party exceptions (aiokafka, httpx, duckdb, msgspec) are translated into these at the
boundary, with context attached: topic, offset, trace_id, URL, file and line.

``exit_code`` is what the CLI exits with: 2 for bad input or usage, 1 for an operational
failure (DESIGN.md, "Exit codes everywhere").
"""

from __future__ import annotations

__all__ = [
    "AnalysisError",
    "BrokerError",
    "CaptureError",
    "ConfigError",
    "ReplayError",
    "ShadowError",
    "TraceError",
    "UsageError",
]


class ShadowError(Exception):
    """Base of every error shadow raises on purpose; its message is one line for a person."""

    exit_code: int = 1


class UsageError(ShadowError):
    """The user asked for something that cannot work as given: fix the input and rerun."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration key has a value shadow cannot use; the message names key, value and fix."""


class TraceError(UsageError):
    """A TraceRecord or a trace file failed validation; the message names the field or row."""


class BrokerError(ShadowError):
    """The embedded Kafka-compatible broker could not be started, reached or stopped."""


class CaptureError(ShadowError):
    """The capture sidecar failed in a way that is not the user's request's fault."""


class ReplayError(ShadowError):
    """The replayer or live mirror failed."""


class AnalysisError(ShadowError):
    """The analyzer could not read or compute from a results store."""
