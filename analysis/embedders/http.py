"""An OpenAI-compatible embeddings endpoint as an :class:`~analysis.embedders.base.Embedder`."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit

import httpx
import numpy as np

from analysis.embedders.base import normalise
from shadow.closing import AsyncClosing, Closing
from shadow.errors import AnalysisError, UsageError

__all__ = ["DEFAULT_HTTP_MODEL", "HttpEmbedder"]

DEFAULT_HTTP_MODEL: Final = "text-embedding-3-small"
"""The ``model`` asked for when the embedder spec names none."""


class HttpEmbedder(Closing, AsyncClosing):
    """An OpenAI-compatible embeddings endpoint: ``POST {base_url}/embeddings``, in batches.

    Args:
        base_url: the API base, e.g. ``https://api.openai.com/v1`` (``/v1`` when no path).
        model: the ``model`` field of each request; also the embedder's ``name``.
        api_key_env: the name of an environment variable holding the API key, sent as a
            bearer token. The key is read once, here, and appears in no message or repr.
        batch_size: texts per request.
        transport: an httpx transport (tests pass ``httpx.MockTransport``).
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str = DEFAULT_HTTP_MODEL,
        api_key_env: str | None = None,
        batch_size: int = 256,
        timeout_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError(
                f"embedder URL {base_url!r} is not an http(s) URL; "
                "give the API base, e.g. https://api.openai.com/v1"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size is {batch_size}; it must be >= 1")
        path = parts.path.rstrip("/") or "/v1"
        self.url = f"{parts.scheme}://{parts.netloc}{path}/embeddings"
        self.name = model
        self.batch_size = batch_size
        headers = {"content-type": "application/json"}
        if api_key_env is not None:
            key = os.environ.get(api_key_env, "")
            if not key:
                raise UsageError(
                    f"environment variable {api_key_env} (the embedder's API key) is not set; "
                    "export it or leave the key out"
                )
            headers["authorization"] = f"Bearer {key}"
        self._client = httpx.Client(headers=headers, timeout=timeout_s, transport=transport)

    def __repr__(self) -> str:
        return f"HttpEmbedder({self.url!r}, model={self.name!r})"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts`` from the endpoint, one request per batch, rows normalised.

        Raises:
            AnalysisError: the endpoint failed or answered something unusable (with the URL).
        """
        batches = [
            self._request(list(texts[i : i + self.batch_size]))
            for i in range(0, len(texts), self.batch_size)
        ]
        if not batches:
            return np.zeros((0, 0), dtype=np.float32)
        if len({b.shape[1] for b in batches}) > 1:
            raise AnalysisError(f"{self.url} returned vectors of different lengths")
        return normalise(np.concatenate(batches))

    def _request(self, texts: list[str]) -> np.ndarray:
        try:
            response = self._client.post(
                self.url, json={"model": self.name, "input": texts, "encoding_format": "float"}
            )
        except httpx.HTTPError as exc:
            raise AnalysisError(f"embeddings request to {self.url} failed: {exc!r}") from None
        if response.status_code != 200:
            raise AnalysisError(
                f"embeddings request to {self.url} answered {response.status_code}: "
                f"{response.text[:200]}"
            )
        try:
            data = response.json()["data"]
            data.sort(key=lambda item: item["index"])
            vectors = np.array([item["embedding"] for item in data], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise AnalysisError(
                f"{self.url} answered with no usable embeddings ({type(exc).__name__}: {exc})"
            ) from None
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise AnalysisError(
                f"{self.url} returned {len(vectors)} embeddings for {len(texts)} texts"
            )
        return vectors

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return self._client.is_closed

    def close(self) -> None:
        """Close the connection pool (safe to call twice)."""
        self._client.close()

    async def aclose(self) -> None:
        """:meth:`close` off the event loop (safe to call twice)."""
        await asyncio.to_thread(self.close)
