"""Which embedder a spec string names: ``load_embedder("auto")``, ``"static"``, a URL...

Spec strings of :func:`load_embedder` (what ``shadow analyze --embedder`` takes):

``auto``
    MiniLM when its packages are installed, else ``None``: the lexical-only mode, whose
    figures are labelled ``lexical``.
``minilm``
    MiniLM, or a :class:`~shadow.errors.UsageError` naming the install command.
``static``
    :class:`~analysis.embedders.static.StaticMiniLMEmbedder` (same packages as MiniLM; the
    first use on a machine distils its table, ~17 s, into ``$SHADOW_CACHE_DIR`` or
    ``~/.cache/shadow``).
``lexical`` or ``none``
    ``None``: no embeddings, lexical divergence.
``http://HOST[:PORT][/PATH]`` or ``https://...``, optionally ``#MODEL``
    :class:`~analysis.embedders.http.HttpEmbedder` on that OpenAI-style base URL (``/v1`` is
    assumed when no path is given), asking for ``MODEL`` (default ``text-embedding-3-small``).

The embedder is wrapped in a :class:`~analysis.embedders.cache.CachedEmbedder` unless caching
is turned off.
"""

from __future__ import annotations

from analysis.embedders.base import Embedder
from analysis.embedders.cache import CachedEmbedder
from analysis.embedders.http import DEFAULT_HTTP_MODEL, HttpEmbedder
from analysis.embedders.minilm import MiniLMEmbedder, minilm_available
from analysis.embedders.static import StaticMiniLMEmbedder
from shadow.errors import UsageError

__all__ = ["load_embedder"]


def load_embedder(
    spec: str, *, api_key_env: str | None = None, cache_entries: int = 50_000
) -> Embedder | None:
    """The embedder a spec string names (see the module docstring), wrapped in a cache.

    ``None`` means lexical-only divergence. ``api_key_env`` names the environment variable
    holding the key of an HTTP endpoint; ``cache_entries`` bounds the
    :class:`~analysis.embedders.cache.CachedEmbedder` (0 turns caching off).

    Raises:
        UsageError: the spec is unknown, or names a model that is not installed.
    """
    text = spec.strip()
    word = text.lower()
    inner: Embedder
    if word in ("lexical", "none"):
        return None
    if word == "auto":
        if not minilm_available():
            return None
        inner = MiniLMEmbedder()
    elif word == "minilm":
        inner = MiniLMEmbedder()
    elif word == "static":
        inner = StaticMiniLMEmbedder()
    elif word.startswith(("http://", "https://")):
        url, _, model = text.partition("#")
        inner = HttpEmbedder(url, model=model or DEFAULT_HTTP_MODEL, api_key_env=api_key_env)
    else:
        raise UsageError(
            f"embedder {spec!r} is not known; use auto, minilm, lexical, static, or an "
            "embeddings API base URL such as https://api.openai.com/v1#text-embedding-3-small"
        )
    return CachedEmbedder(inner, max_entries=cache_entries) if cache_entries > 0 else inner
