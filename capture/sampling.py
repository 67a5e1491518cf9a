"""Which exchanges the sidecar tees: a rate, optionally consistent on a header's value.

This runs on the live request path, so it decides in about a microsecond and allocates little:
rate 1 and rate 0 return at once. With ``key_header`` set and present, the header's value is
hashed (BLAKE2b, 8 bytes, read as an unsigned integer, so uniform over ``[0, 2**64)``) and
compared with ``rate × 2**64``: the same value is always in or always out, on every sidecar
and across restarts, and the share of distinct values that are in approximates ``rate``. Raising
the rate only adds values; a value that was in stays in. Without the header (or with an empty
value) a request is drawn at random from the sampler's own generator.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping

from shadow.config import SamplingConfig

__all__ = ["Sampler"]

_SPAN = 1 << 64


class Sampler:
    """Decides per request whether to tee it (see the module docstring for the rule)."""

    __slots__ = ("_fixed", "_key", "_key_raw", "_random", "_rate", "_threshold")

    def __init__(self, config: SamplingConfig, *, seed: int | None = None) -> None:
        """Build from ``config``; ``seed`` makes the random fallback reproducible (tests)."""
        self._rate = config.rate
        self._fixed: bool | None = None
        if config.rate >= 1.0:
            self._fixed = True
        elif config.rate <= 0.0:
            self._fixed = False
        self._key = config.key_header.lower()
        self._key_raw = self._key.encode("latin-1")
        self._threshold = int(config.rate * _SPAN)
        self._random = random.Random(seed)

    def sample(self, headers: Mapping[str, str]) -> bool:
        """Whether to tee a request with these headers (names lower-cased)."""
        if self._fixed is not None:
            return self._fixed
        if self._key:
            value = headers.get(self._key)
            if value:
                try:  # header text is latin-1 decoded bytes (ASGI); this recovers the bytes
                    raw = value.encode("latin-1")
                except UnicodeEncodeError:
                    raw = value.encode("utf-8", "surrogatepass")
                return self._in(raw)
        return self._random.random() < self._rate

    def sample_raw(self, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        """:meth:`sample` for ASGI's raw ``scope["headers"]`` (lower-cased names, as bytes).

        Decides on the bytes as received, without building a mapping; a header repeated in the
        request is keyed on its first value.
        """
        if self._fixed is not None:
            return self._fixed
        if self._key_raw:
            for name, value in headers:
                if name == self._key_raw:
                    if value:
                        return self._in(bytes(value))
                    break
        return self._random.random() < self._rate

    def _in(self, value: bytes) -> bool:
        digest = hashlib.blake2b(value, digest_size=8).digest()
        return int.from_bytes(digest, "big") < self._threshold
