"""Sentence embedders behind the semantic divergence measure.

:class:`Embedder` (module ``base``) is the protocol; ``minilm`` runs all-MiniLM-L6-v2 through
onnxruntime, ``static`` is its attention-free word-piece table, ``http`` any OpenAI-compatible
embeddings endpoint, ``cache`` a bounded LRU in front of any of them, and ``loader`` turns a
spec string (``auto``, ``static``, a URL ...) into one.
"""

from __future__ import annotations

from analysis.embedders.base import Embedder, embed_async
from analysis.embedders.cache import CachedEmbedder
from analysis.embedders.http import HttpEmbedder
from analysis.embedders.loader import load_embedder
from analysis.embedders.minilm import MiniLMEmbedder, minilm_available
from analysis.embedders.static import StaticMiniLMEmbedder

__all__ = [
    "CachedEmbedder",
    "Embedder",
    "HttpEmbedder",
    "MiniLMEmbedder",
    "StaticMiniLMEmbedder",
    "embed_async",
    "load_embedder",
    "minilm_available",
]
