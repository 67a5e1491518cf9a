"""``POST /v1/embeddings`` of ``shadow mock-llm``: deterministic, instant embeddings.

No latency model, no injected faults: a signed, hashed bag of words (lower-cased word runs,
BLAKE2b of each picks a dimension and a sign) in 256 dimensions unless the request asks for
``dimensions``, L2-normalised, so texts sharing words are close. ``encoding_format`` ``float``
and ``base64`` (little-endian float32) are served; ``usage.prompt_tokens`` counts the inputs
under :mod:`shadow.wire.tokens`.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct

import msgspec

from shadow.sim.exchange import BadRequest, json_object
from shadow.wire.tokens import count_tokens

__all__ = ["embeddings_body"]

_WORD = re.compile(r"\w+", re.UNICODE)
_EMBEDDING_DIMS = 256


def embeddings_body(raw: bytes) -> bytes:
    """The answer to an embeddings request, or :class:`~shadow.sim.exchange.BadRequest`."""
    texts, dims, as_base64, model = _parse(raw)
    data = []
    for index, text in enumerate(texts):
        vector = _embedding(text, dims)
        embedding: list[float] | str = (
            base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode("ascii")
            if as_base64
            else vector
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = sum(count_tokens(text) for text in texts)
    body = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return msgspec.json.encode(body)


def _parse(raw: bytes) -> tuple[list[str], int, bool, str]:
    """(texts, dimensions, base64?, model) of an embeddings request, or BadRequest."""
    body = json_object(raw)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' must be a non-empty string", param="model")
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise BadRequest(
            "'input' must be a string or a non-empty array of strings (token arrays are not "
            "served)",
            param="input",
        )
    dims = body.get("dimensions", _EMBEDDING_DIMS)
    if not isinstance(dims, int) or isinstance(dims, bool) or not 1 <= dims <= 4096:
        raise BadRequest("'dimensions' must be an integer between 1 and 4096", param="dimensions")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise BadRequest("'encoding_format' must be 'float' or 'base64'", param="encoding_format")
    return texts, dims, encoding == "base64", model


def _embedding(text: str, dims: int) -> list[float]:
    """A signed hashed bag of words, L2-normalised; a text with no words gets the first axis."""
    vector = [0.0] * dims
    for word in _WORD.findall(text.lower()):
        h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
        vector[(h >> 1) % dims] += 1.0 if h & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0.0:
        vector[0] = norm = 1.0
    return [x / norm for x in vector]
