"""The :class:`Embedder` protocol: the swap point behind semantic divergence.

An embedder turns texts into L2-normalised vectors, one row per text; ``name`` labels the
figures it produces (``semantic:<name>``). An embedder may also say it is ``fast`` (thousands
of texts per second), which lets analysis compare its larger divergence sample.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

import numpy as np

__all__ = ["Embedder", "embed_async", "normalise"]


class Embedder(Protocol):
    """Turns texts into L2-normalised vectors (one row per text)."""

    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts``, shape (len(texts), dim), rows of unit length."""
        ...


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (an all-zero row stays zero rather than becoming NaN)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


async def embed_async(embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
    """``embedder.embed(texts)`` on a worker thread, so the event loop never runs a model."""
    return await asyncio.to_thread(embedder.embed, list(texts))
