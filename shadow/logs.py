"""Structured logs: one JSON object per line on stderr, for long-running processes."""

from __future__ import annotations

import logging
import sys
import time

import msgspec

__all__ = ["configure_logging", "logging_settings"]

_configured: tuple[str, bool] | None = None

_STANDARD = frozenset(vars(logging.makeLogRecord({})))


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():  # fields passed with extra={...}
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return msgspec.json.encode(entry).decode()


def configure_logging(level: str = "info", *, json: bool = True) -> None:
    """Send the ``shadow`` loggers to stderr, as JSON lines or plain text."""
    global _configured
    _configured = (level, json)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _JsonFormatter() if json else logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    )
    root = logging.getLogger("shadow")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    # aiokafka logs every failed reconnect at ERROR; shadow reports sink trouble itself, once.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def logging_settings() -> tuple[str, bool] | None:
    """What :func:`configure_logging` was last called with, to repeat it in a child process."""
    return _configured
