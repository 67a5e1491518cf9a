"""Dead-letter file: where a consumer puts a record it cannot use, with the reason, and moves on.

One JSON object per line: ``{"at": <epoch s>, "source": "<file:line or topic/partition@offset>",
"reason": "<what was wrong>", "raw": "<the bytes as text>"}`` (``raw_b64`` when not UTF-8).
Nothing is lost: the raw bytes are kept so a fixed producer's output can be replayed later.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import IO

import msgspec

from shadow.closing import Closing

__all__ = ["DeadLetterFile"]


class DeadLetterFile(Closing):
    """Append-only dead-letter JSONL file; opened lazily so a clean run leaves no file behind."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.count = 0
        self._fh: IO[bytes] | None = None

    def write(self, raw: bytes, *, reason: str, source: str) -> None:
        """Record one unusable input with where it came from and why it was rejected."""
        entry: dict[str, object] = {"at": time.time(), "source": source, "reason": reason}
        try:
            entry["raw"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            entry["raw_b64"] = base64.b64encode(raw).decode("ascii")
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("ab")
        self._fh.write(msgspec.json.encode(entry) + b"\n")
        self._fh.flush()
        self.count += 1

    def close(self) -> None:
        """Close the file; safe to call twice."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
