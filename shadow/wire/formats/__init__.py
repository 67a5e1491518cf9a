"""The wire formats shadow understands, one module each, behind one interface.

:mod:`~shadow.wire.formats.base` is the interface (:class:`WireFormat`: what a request asks,
what an answer says, how a stream is reassembled, where usage is, under one usage convention);
:mod:`~shadow.wire.formats.openai_chat`, :mod:`~shadow.wire.formats.openai_completions`,
:mod:`~shadow.wire.formats.openai_embeddings`, :mod:`~shadow.wire.formats.openai_responses`,
:mod:`~shadow.wire.formats.anthropic` and :mod:`~shadow.wire.formats.gemini` implement it
(Azure OpenAI is the OpenAI formats on another path), :mod:`~shadow.wire.formats.openai` reads
any OpenAI format by shape, and :mod:`~shadow.wire.formats.registry` picks a format from a
request's path or a name.
"""

from __future__ import annotations

from shadow.wire.formats.base import (
    Answer,
    Counts,
    Family,
    FormatName,
    RequestFacts,
    StreamState,
    WireFormat,
)
from shadow.wire.formats.registry import FORMATS, format_for, format_of_path

__all__ = [
    "FORMATS",
    "Answer",
    "Counts",
    "Family",
    "FormatName",
    "RequestFacts",
    "StreamState",
    "WireFormat",
    "format_for",
    "format_of_path",
]
