"""The one exception tree of shadow.

::

    ShadowError                 anything shadow raises on purpose; the CLI prints it in one line
    ├── UsageError              bad input from the user: flags, files, config (exit 2)
    │   ├── ConfigError         a shadow.toml key with a bad value
    │   ├── TraceError          a TraceRecord or trace file that fails validation
    │   ├── UnknownRunError     a resumed run id the results store does not hold
    │   │                       (in shadow.replay.session)
    │   └── NoRunError          a results store that holds no run yet (in analysis.run)
    ├── BrokerError             the embedded broker could not start or stop
    ├── CaptureError            the capture sidecar
    │   └── SinkError           a sink (Kafka, a file) could not deliver a batch
    ├── ReplayError             the replayer and live mirror
    ├── AnalysisError           the analyzer and results store
    └── DemoError               a step of `shadow demo` (in shadow.demo.processes; names the log)

Where the errors are raised follows the tree of packages (docs/architecture.md, "Layout")::

    shadow/cli, shadow/demo     on top: translate errors into one line and an exit code
    capture/, analysis/         build on shadow/
    shadow/replay, results      replay and store
    shadow/kafka                Kafka clients and the embedded broker
    shadow/trace, shadow/wire   records, files, wire formats
    shadow/errors, config, ...  imported by everything, import nothing of shadow's above them

Third-party exceptions (aiokafka, httpx, duckdb, msgspec) are translated into these at the
boundary, with context attached: topic, offset, trace_id, URL, file and line.

``exit_code`` is what the CLI exits with: 2 for bad input or usage, 1 for an operational
failure (docs/architecture.md, "Exit codes"). Library code names its own parameters in a
message (``UsageError(..., setting="rate")``); the CLI names the flag (:mod:`shadow.cli.flags`).
"""

from __future__ import annotations

__all__ = [
    "AnalysisError",
    "BrokerError",
    "CaptureError",
    "ConfigError",
    "ReplayError",
    "ShadowError",
    "SinkError",
    "TraceError",
    "UsageError",
]


class ShadowError(Exception):
    """Base of every error shadow raises on purpose; its message is one line for a person."""

    exit_code: int = 1


class UsageError(ShadowError):
    """The user asked for something that cannot work as given: fix the input and rerun.

    ``setting`` names the parameter the message is about when the message starts with it
    (``rate has value 0; it must be > 0``): library code speaks of its parameters, and the CLI
    (:func:`shadow.cli.flags.user_message`) says the same of the flag that set it.
    """

    exit_code = 2

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class ConfigError(UsageError):
    """A configuration key has a value shadow cannot use; the message names key, value and fix."""


class TraceError(UsageError):
    """A TraceRecord or a trace file failed validation; the message names the field or row."""


class BrokerError(ShadowError):
    """The embedded Kafka-compatible broker could not be started, reached or stopped."""


class CaptureError(ShadowError):
    """The capture sidecar failed in a way that is not the user's request's fault."""


class SinkError(CaptureError):
    """A batch could not be delivered (the sink is down, slow or refused it)."""


class ReplayError(ShadowError):
    """The replayer or live mirror failed."""


class AnalysisError(ShadowError):
    """The analyzer could not read or compute from a results store."""
