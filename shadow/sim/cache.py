"""The simulated prompt cache: which part of a prompt was read from, or written to, a cache.

A request names a *cacheable prefix* of its prompt text (the formats say where:
Anthropic's last ``cache_control`` breakpoint, Gemini's implicit cache of every turn but the
last; OpenAI formats report no caching, ``cached_tokens`` 0). The first request with a prefix
writes it (its tokens are the cache writes, when the format reports writes); a later request
with the same prefix reads it (its tokens are the cache reads, and the prefill of those tokens
is skipped, so TTFT drops). Entries never expire; the least recently used go beyond 10,000.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from shadow.wire.tokens import count_tokens

__all__ = ["PromptCache"]

_ENTRIES = 10_000


class PromptCache:
    """Prefixes seen, least recently used first."""

    def __init__(self, entries: int = _ENTRIES) -> None:
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._entries = entries

    def use(self, prefix: str | None) -> tuple[int, int]:
        """(tokens read, tokens written) for a request with this cacheable prefix."""
        if not prefix:
            return 0, 0
        tokens = count_tokens(prefix)
        if not tokens:
            return 0, 0
        key = hashlib.blake2b(prefix.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        if key in self._seen:
            self._seen.move_to_end(key)
            return tokens, 0
        self._seen[key] = None
        if len(self._seen) > self._entries:
            self._seen.popitem(last=False)
        return 0, tokens
