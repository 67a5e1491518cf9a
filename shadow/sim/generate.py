"""Deterministic answer text for the simulated models.

The *reference answer* to a prompt is a sequence of short English sentences drawn from a
random generator seeded by (prompt digest, server seed), so it depends on the prompt and the
seed only. A model's answer is the reference with some sentences replaced (``drift``: a
per-sentence probability, drawn from a generator seeded by the digest, the seed and the model
id), cut to its token budget. ``temperature`` > 0 then swaps a few words, drawn from a
per-call generator, so two calls with the same prompt differ a little: the noise floor that
``baseline_repeat`` measures.

Lengths: the reference has a natural length between 8 and 600 tokens (log-uniform, from the
prompt digest); a model answers with ``min(natural × length factor, max_tokens)`` tokens.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass

__all__ = ["Answer", "answer", "natural_length", "prompt_digest"]

_SUBJECTS = (
    "the function",
    "this loop",
    "the parser",
    "the cache",
    "the request handler",
    "the test suite",
    "the config loader",
    "the retry logic",
    "the query",
    "the worker pool",
    "the serializer",
    "this class",
    "the index",
    "the client",
    "the migration",
)
_VERBS = (
    "reads",
    "returns",
    "validates",
    "caches",
    "updates",
    "skips",
    "retries",
    "parses",
    "writes",
    "sorts",
    "filters",
    "raises",
    "logs",
    "locks",
    "batches",
)
_OBJECTS = (
    "the input list",
    "each record",
    "the response body",
    "a default value",
    "the file path",
    "every key",
    "the session token",
    "the error",
    "the result set",
    "the whole buffer",
    "the user id",
    "the timeout",
    "an empty dict",
    "the last row",
    "the header map",
)
_TAILS = (
    "before it returns.",
    "on every call.",
    "when the flag is set.",
    "in a single pass.",
    "without a lock.",
    "after the first retry.",
    "only once.",
    "for each item.",
    "in constant time.",
    "if the value is missing.",
    "at startup.",
    "inside the loop.",
)
_SWAPS = ("now", "also", "then", "still", "just", "again", "first", "here")

_MIN_LEN, _MAX_LEN = 8, 600


def prompt_digest(prompt: str) -> bytes:
    """A stable 16-byte digest of the prompt (independent of Python's salted ``hash``)."""
    return hashlib.blake2b(prompt.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _rng(*parts: bytes | int | str) -> random.Random:
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        h.update(part if isinstance(part, bytes) else str(part).encode())
        h.update(b"\x00")
    return random.Random(int.from_bytes(h.digest(), "big"))


def natural_length(digest: bytes, seed: int) -> int:
    """Tokens the reference answer runs to when nothing limits it (8-600, log-uniform)."""
    u = _rng(digest, seed, "length").random()
    return round(math.exp(math.log(_MIN_LEN) + u * (math.log(_MAX_LEN) - math.log(_MIN_LEN))))


def _sentence(rng: random.Random) -> list[str]:
    text = (
        f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_TAILS)}"
    )
    words = text.split()
    words[0] = words[0].capitalize()
    return words


@dataclass(frozen=True, slots=True)
class Answer:
    """A model's answer: the words (tokens) and whether it stopped on the length limit."""

    words: list[str]
    finish_reason: str  # "stop" or "length"

    @property
    def text(self) -> str:
        """The answer as one string."""
        return " ".join(self.words)


def answer(
    digest: bytes,
    *,
    seed: int,
    model_id: str,
    drift: float,
    length_factor: float,
    max_tokens: int | None,
    temperature: float,
    call_rng: random.Random,
) -> Answer:
    """The answer ``model_id`` gives to the prompt with ``digest`` (see the module docstring)."""
    natural = max(1, round(natural_length(digest, seed) * length_factor))
    budget = natural if max_tokens is None else min(natural, max_tokens)
    finish = "length" if max_tokens is not None and max_tokens < natural else "stop"
    # Two generators, drawn in lock step, so sentence i of the reference never depends on the
    # model and a model's drift decisions never depend on its token budget.
    reference = _rng(digest, seed, "reference")
    variant = _rng(digest, seed, model_id)
    words: list[str] = []
    while len(words) < budget:
        own = _sentence(reference)
        other = _sentence(variant)
        words.extend(other if variant.random() < drift else own)
    del words[budget:]
    if temperature > 0:
        swap = min(0.03 * temperature, 0.2)
        for i in range(len(words)):
            if call_rng.random() < swap:
                words[i] = call_rng.choice(_SWAPS)
    return Answer(words, finish)
