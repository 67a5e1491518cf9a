"""The token rule shared by the simulated model server and the trace importer.

A token is a maximal run of non-whitespace characters: ``count_tokens("def f(x): return x")``
is 4. Real tokenizers differ, but this rule is exact, cheap and documented, so an imported
trace's recorded context length is precisely what ``shadow mock-llm`` reports as
``prompt_tokens``. Chat requests count the ``content`` of every message and nothing else
(no per-message overhead).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["VOCABULARY", "count_tokens", "prompt_text", "synthetic_words"]

# Code-flavoured words: the Azure trace is a code-completion service.
VOCABULARY: tuple[str, ...] = tuple(
    """
    def return class self import from if else elif for while in not and or None True False
    try except finally raise with as yield lambda async await pass break continue assert
    value result items index count total buffer request response client server config
    parse render format encode decode load save open close read write send receive query
    user account order invoice payment cart product price amount currency customer session
    token cache queue worker thread process event handler callback listener timeout retry
    list dict set tuple str int float bool bytes len range enumerate zip map filter sorted
    path file line column row table schema field record key name data node tree graph edge
    error warning debug info logger message status code header body payload json yaml csv
    test case fixture mock assert_equal expected actual setup teardown params args kwargs
    """.split()
)


def count_tokens(text: str) -> int:
    """Number of tokens in ``text`` under shadow's documented rule (whitespace-separated runs)."""
    return len(text.split())


def prompt_text(body: Mapping[str, Any]) -> str:
    """The text a request prompts with: chat message contents, or ``prompt`` for completions."""
    messages = body.get("messages")
    if isinstance(messages, list):
        return "\n".join(_content_text(m.get("content")) for m in messages if isinstance(m, dict))
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        return "\n".join(str(p) for p in prompt)
    return prompt if isinstance(prompt, str) else ""


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def synthetic_words(rng: random.Random, n: int, words: Iterable[str] = VOCABULARY) -> str:
    """``n`` vocabulary words drawn from ``rng``, joined by spaces (exactly ``n`` tokens)."""
    pool = tuple(words)
    return " ".join(rng.choices(pool, k=n))
