"""Request features: slice labels every request has, whatever its format, on by default.

:func:`request_features` reads, from a request's path and body (and what the answer said),
the labels ``shadow analyze --by`` can group by without any ``[[slices]]`` rule:

============== ==========================================================================
``turns``      user turns of the conversation, bucketed ``0``, ``1``, ``2-3``, ``4-9``,
               ``10+`` (left out for embeddings)
``prompt_size`` prompt tokens, bucketed ``<256``, ``256-1k``, ``1k-4k``, ``4k-16k``,
               ``16k-64k``, ``64k+`` (1k = 1,024 tokens); the answer's reported prompt
               tokens, else the token rule's estimate of the request's text
``tools``      ``yes`` when the request defines tools (``tools`` or ``functions``)
``tool_calls`` ``yes`` when the answer calls tools; ``no`` when it does not or when the
               request defines none; left out when there is no successful answer to tell
``stream``     ``yes`` when the request asks for a stream (``"stream": true``, Gemini's
               ``:streamGenerateContent``) or the answer was an event stream
``format``     the API of the path (:func:`shadow.wire.routes.api_of`): ``openai``,
               ``azure``, ``anthropic``, ``gemini``
============== ==========================================================================

The request is read by its wire format (:func:`shadow.wire.formats.format_for` of the path):
its :class:`~shadow.wire.formats.base.RequestFacts` give the user turns (a user message that
only carries tool results is not a turn), whether tools are defined, the prompt text a token
estimate counts and whether a stream is asked for. Nothing here raises on malformed input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from shadow.wire.formats import format_for
from shadow.wire.routes import api_of
from shadow.wire.tokens import count_tokens

__all__ = [
    "FEATURE_NAMES",
    "PROMPT_SIZE_BUCKETS",
    "TURN_BUCKETS",
    "answer_calls_tools",
    "prompt_size_bucket",
    "request_features",
    "turns_bucket",
]

FEATURE_NAMES: Final = ("turns", "prompt_size", "tools", "tool_calls", "stream", "format")
"""The slice names :func:`request_features` may set, in order."""

TURN_BUCKETS: Final = ((0, "0"), (1, "1"), (2, "2-3"), (4, "4-9"), (10, "10+"))
"""(lowest count, label) of each ``turns`` bucket."""

PROMPT_SIZE_BUCKETS: Final = (
    (0, "<256"),
    (256, "256-1k"),
    (1_024, "1k-4k"),
    (4_096, "4k-16k"),
    (16_384, "16k-64k"),
    (65_536, "64k+"),
)
"""(lowest prompt token count, label) of each ``prompt_size`` bucket."""


def _bucket(value: int, buckets: tuple[tuple[int, str], ...]) -> str:
    label = buckets[0][1]
    for lowest, name in buckets:
        if value >= lowest:
            label = name
    return label


def turns_bucket(turns: int) -> str:
    """The ``turns`` label of a number of user turns."""
    return _bucket(turns, TURN_BUCKETS)


def prompt_size_bucket(tokens: int) -> str:
    """The ``prompt_size`` label of a number of prompt tokens."""
    return _bucket(tokens, PROMPT_SIZE_BUCKETS)


def request_features(
    path: str,
    request: object,
    *,
    prompt_tokens: int | None = None,
    streamed: bool = False,
    tool_calls: bool | None = None,
) -> dict[str, str]:
    """The feature slices of one request (module docstring).

    Args:
        path: the request path (the API is read from it).
        request: the decoded JSON request body (anything else counts as an empty request).
        prompt_tokens: the answer's prompt tokens when known (else estimated from the text).
        streamed: the answer was an event stream.
        tool_calls: whether the answer called tools; None when there is no answer to tell.
    """
    body: Mapping[str, Any] = request if isinstance(request, Mapping) else {}
    api = api_of(path)
    facts = format_for(path).request(body, path)
    features: dict[str, str] = {}
    if not path.endswith("/embeddings"):  # not a conversation
        features["turns"] = turns_bucket(facts.user_turns)
    if prompt_tokens is None:
        prompt_tokens = count_tokens(facts.prompt)
    features["prompt_size"] = prompt_size_bucket(prompt_tokens)
    features["tools"] = _yes(facts.tools)
    if not facts.tools:
        features["tool_calls"] = "no"
    elif tool_calls is not None:
        features["tool_calls"] = _yes(tool_calls)
    features["stream"] = _yes(facts.stream or streamed)
    features["format"] = api
    return features


def answer_calls_tools(answer: object, path: str | None = None) -> bool:
    """Whether a decoded (not streamed) answer body calls tools, read in the format of the
    request's ``path`` (any OpenAI format without one)."""
    if not isinstance(answer, Mapping):
        return False
    read = format_for(path).answer(answer)
    return read is not None and bool(read.tool_calls)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"
