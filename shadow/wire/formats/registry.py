"""Which format a request is in: picked from its path, or named.

:func:`format_for` takes a path (the query, ``?api-version=`` or ``?alt=sse``, is ignored) or a
format's name. The path's API is :func:`shadow.wire.routes.api_of`'s: Anthropic's
``/v1/messages`` is :data:`~shadow.wire.formats.anthropic.ANTHROPIC`, Gemini's
``…:generateContent`` / ``…:streamGenerateContent`` is
:data:`~shadow.wire.formats.gemini.GEMINI`; an OpenAI or Azure OpenAI path
(``/openai/deployments/{d}/…``) is the OpenAI format its last segments name
(``chat/completions``, ``completions``, ``embeddings``, ``responses``). Any other path, and no
path at all, is :data:`~shadow.wire.formats.openai.OPENAI`, which tells the OpenAI formats
apart by their bodies' shapes (shadow's behaviour before it knew formats).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from shadow.wire.formats.anthropic import ANTHROPIC
from shadow.wire.formats.base import FormatName, WireFormat
from shadow.wire.formats.gemini import GEMINI
from shadow.wire.formats.openai import OPENAI
from shadow.wire.formats.openai_chat import CHAT
from shadow.wire.formats.openai_completions import COMPLETIONS
from shadow.wire.formats.openai_embeddings import EMBEDDINGS
from shadow.wire.formats.openai_responses import RESPONSES
from shadow.wire.routes import api_of

__all__ = ["FORMATS", "format_for", "format_of_path"]

FORMATS: Final[Mapping[str, WireFormat]] = MappingProxyType(
    {f.name: f for f in (ANTHROPIC, GEMINI, OPENAI, CHAT, COMPLETIONS, EMBEDDINGS, RESPONSES)}
)
"""Every format by its name."""

_OPENAI_ENDINGS: Final = (
    ("/chat/completions", CHAT),
    ("/completions", COMPLETIONS),
    ("/embeddings", EMBEDDINGS),
    ("/responses", RESPONSES),
)


def format_of_path(path: str) -> WireFormat:
    """The format of a request sent to ``path`` (module docstring)."""
    path = path.partition("?")[0].rstrip("/")
    api = api_of(path)
    if api == "anthropic":
        return ANTHROPIC
    if api == "gemini":
        return GEMINI
    for ending, fmt in _OPENAI_ENDINGS:
        if path.endswith(ending):
            return fmt
    return OPENAI


def format_for(path: str | None = None, fmt: FormatName | WireFormat | None = None) -> WireFormat:
    """The format named by ``fmt`` (a name or a format), else ``path``'s, else any OpenAI's.

    Raises:
        ValueError: ``fmt`` names no format (the message lists the names).
    """
    if fmt is not None and not isinstance(fmt, str):
        return fmt
    if fmt is not None:
        try:
            return FORMATS[fmt]
        except KeyError:
            raise ValueError(
                f"format {fmt!r} is unknown; use one of {', '.join(sorted(FORMATS))}"
            ) from None
    return OPENAI if path is None else format_of_path(path)
