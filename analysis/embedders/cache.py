"""A bounded LRU cache in front of any embedder: each distinct text is embedded once."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from analysis.embedders.base import Embedder

__all__ = ["CachedEmbedder"]


class CachedEmbedder:
    """An :class:`Embedder` that embeds each distinct text once: bounded LRU by text digest.

    Keys are 16-byte BLAKE2b digests of the UTF-8 text, so the cache holds no texts. Within
    one call, repeated texts go to ``inner`` once. ``max_entries`` × 1.5 KiB is the memory
    bound for 384-dimension vectors (50,000 entries: about 75 MiB). Thread-safe.
    """

    def __init__(self, inner: Embedder, *, max_entries: int = 50_000) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries is {max_entries}; it must be >= 1")
        self.inner = inner
        self.name = inner.name
        self.fast: bool = getattr(inner, "fast", False)
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts``; only texts not cached are passed on to ``inner``."""
        keys = [
            hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16).digest()
            for t in texts
        ]
        found: dict[bytes, np.ndarray] = {}
        todo: dict[bytes, str] = {}
        with self._lock:
            for key, text in zip(keys, texts, strict=True):
                if key in found or key in todo:
                    continue
                vector = self._entries.get(key)
                if vector is None:
                    todo[key] = text
                else:
                    self._entries.move_to_end(key)
                    found[key] = vector
            self.hits += len(texts) - len(todo)
            self.misses += len(todo)
        if todo:
            # Outside the lock: a slow model must not block callers whose texts are cached.
            fresh = self.inner.embed(list(todo.values()))
            with self._lock:
                for key, row in zip(todo, fresh, strict=True):
                    # A copy: a view would keep the whole batch's array alive after eviction.
                    found[key] = self._entries[key] = np.array(row)
                    self._entries.move_to_end(key)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([found[key] for key in keys])
