"""shadow: production trace replay and shadow-traffic harness for AI/LLM pipelines.

The core package: the TraceRecord contract, configuration, errors, the embedded broker and the
simulated model server. ``capture`` (the sidecar) and ``analysis`` (the analyzer) build on it.
"""

from __future__ import annotations

from shadow._version import __version__
from shadow.config import Config, load_config
from shadow.errors import (
    AnalysisError,
    BrokerError,
    CaptureError,
    ConfigError,
    ReplayError,
    ShadowError,
    TraceError,
    UsageError,
)
from shadow.trace.record import (
    HttpRequest,
    HttpResponse,
    Timing,
    TraceRecord,
    Usage,
    decode,
    encode,
)

__all__ = [
    "AnalysisError",
    "BrokerError",
    "CaptureError",
    "Config",
    "ConfigError",
    "HttpRequest",
    "HttpResponse",
    "ReplayError",
    "ShadowError",
    "Timing",
    "TraceError",
    "TraceRecord",
    "Usage",
    "UsageError",
    "__version__",
    "decode",
    "encode",
    "load_config",
]
