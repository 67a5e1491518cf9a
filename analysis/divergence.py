"""How different two outputs are, per trace: 0 = the same, 1 = unrelated.

Two measures are built in and need no model:

- **lexical**: 1 − token F1 between the two texts (tokens are lower-cased word runs; F1 of the
  two bags of words, as in SQuAD's answer overlap);
- **structural**, when both outputs are JSON: 1 − the Jaccard similarity of their sets of
  (path, type, value) leaves, so a changed key, type or value each counts.

The *semantic* measure (1 − cosine of sentence embeddings) plugs in through the
:class:`~analysis.embedders.base.Embedder` protocol; until an embedding model is configured,
figures are labelled ``lexical`` so nobody mistakes word overlap for meaning.

``excess divergence`` (``docs/architecture.md``, "Metric definitions") = mean
candidate-vs-baseline divergence − mean baseline-vs-baseline_repeat divergence: the part of
the difference that the baseline's own nondeterminism does not explain.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from analysis.embedders.base import Embedder

__all__ = ["divergence", "kind", "lexical", "structural"]

_WORD = re.compile(r"\w+", re.UNICODE)


def lexical(a: str | None, b: str | None) -> float:
    """1 − token F1 of the two texts (two empty texts are identical: 0)."""
    wa = list(map(str.lower, _WORD.findall(a or "")))
    wb = list(map(str.lower, _WORD.findall(b or "")))
    if not wa and not wb:
        return 0.0
    ta, tb = Counter(wa), Counter(wb)
    common = sum(min(n, tb[w]) for w, n in ta.items() if w in tb)
    if common == 0:
        return 1.0
    precision = common / len(wa)
    recall = common / len(wb)
    return 1.0 - 2 * precision * recall / (precision + recall)


def _leaves(value: Any, path: str = "$") -> Iterator[tuple[str, str, str]]:
    if isinstance(value, dict):
        if not value:
            yield (path, "object", "{}")
        for key, child in value.items():
            yield from _leaves(child, f"{path}.{key}")
    elif isinstance(value, list):
        if not value:
            yield (path, "array", "[]")
        for index, child in enumerate(value):
            yield from _leaves(child, f"{path}[{index}]")
    else:
        yield (path, type(value).__name__, json.dumps(value, sort_keys=True))


def _container(text: str | None) -> bool:
    """True when ``text`` could be a JSON object or array (its first non-space is { or [)."""
    return bool(text) and str(text).lstrip()[:1] in ("{", "[")


def structural(a: str | None, b: str | None) -> float | None:
    """1 − Jaccard of the JSON leaves (path, type, value); None unless both are JSON."""
    if not _container(a) or not _container(b):
        return None  # a JSON object or array starts with { or [ (not parsed: much faster)
    try:
        da, db = json.loads(a or ""), json.loads(b or "")
    except ValueError:
        return None
    if not isinstance(da, dict | list) or not isinstance(db, dict | list):
        return None
    la, lb = set(_leaves(da)), set(_leaves(db))
    union = la | lb
    return 0.0 if not union else 1.0 - len(la & lb) / len(union)


def kind(embedder: Embedder | None) -> str:
    """The label of the figures a run gets: ``semantic:<model>`` or ``lexical``."""
    return f"semantic:{embedder.name}" if embedder is not None else "lexical"


def divergence(
    a: Sequence[str | None], b: Sequence[str | None], embedder: Embedder | None = None
) -> np.ndarray:
    """Per-pair divergence of two aligned lists of outputs.

    JSON pairs use :func:`structural`; other pairs use 1 − cosine of their embeddings when an
    ``embedder`` is given, else :func:`lexical`. A pair where either side is missing (the arm
    failed) gets NaN: failures are counted by the ok rate, not as divergence.
    """
    if len(a) != len(b):
        raise ValueError("the two lists of outputs differ in length")
    out = np.full(len(a), np.nan)
    semantic: list[int] = []
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if x is None or y is None:
            continue
        shape = structural(x, y)
        if shape is not None:
            out[i] = shape
        elif not x.strip() or not y.strip():
            # Two empty answers are the same; an empty one and a real one, unrelated (an
            # embedder has no meaning for an empty text).
            out[i] = 0.0 if not x.strip() and not y.strip() else 1.0
        elif embedder is not None:
            semantic.append(i)
        else:
            out[i] = lexical(x, y)
    if semantic and embedder is not None:
        ea = embedder.embed([str(a[i]) for i in semantic])
        eb = embedder.embed([str(b[i]) for i in semantic])
        # A negative cosine is no more unrelated than 0: divergence stays within [0, 1].
        cosine = np.clip(np.sum(ea * eb, axis=1), 0.0, 1.0)
        out[semantic] = 1.0 - cosine
    return out
