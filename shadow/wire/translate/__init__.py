"""Candidates on another provider: an OpenAI Chat request in another API, and its answer back.

:mod:`.request` translates a captured OpenAI Chat Completions request into an Anthropic
Messages or Gemini generateContent request (or refuses it whole); :mod:`.answer` reads any
API's answer into the common form. The mapping is docs/architecture.md's "Translation" table.
"""

from shadow.wire.translate.answer import Answer, read_answer
from shadow.wire.translate.request import (
    ANTHROPIC_MAX_TOKENS,
    Format,
    Translated,
    Untranslatable,
    translate_request,
)

__all__ = [
    "ANTHROPIC_MAX_TOKENS",
    "Answer",
    "Format",
    "Translated",
    "Untranslatable",
    "read_answer",
    "translate_request",
]
