"""What the LLM wire formats say: streams, usage, answer text, the token rule, credentials,
routes.

Capture, replay and mirror read responses only through this package, so a format is taught
to shadow in one place: :mod:`~shadow.wire.formats` holds one module per wire format (OpenAI
Chat Completions, Completions, Embeddings and Responses, Azure OpenAI's paths of them,
Anthropic Messages, Gemini generateContent) behind one interface, picked from the request's
path; :mod:`~shadow.wire.sse` detects and reassembles a server-sent-event stream,
:mod:`~shadow.wire.usage` finds token usage and the answer's text,
:mod:`~shadow.wire.tokens` is the rule that estimates tokens when a response reports none,
:mod:`~shadow.wire.encoding` undoes content codings (gzip, deflate, br, zstd) for the record,
:mod:`~shadow.wire.credentials` names the headers and parameters that carry credentials
(capture redacts them, replay never sends them) and how each API takes a key, and
:mod:`~shadow.wire.routes` the ``METHOD /path`` routes replay may send, over normalised paths.
"""

from __future__ import annotations

from shadow.wire.credentials import ACCOUNT_HEADERS, CREDENTIAL_HEADERS, CREDENTIAL_PARAMS
from shadow.wire.sse import StreamSummary, is_event_stream, reassemble
from shadow.wire.tokens import count_tokens, prompt_text
from shadow.wire.usage import extract_usage, output_text

__all__ = [
    "ACCOUNT_HEADERS",
    "CREDENTIAL_HEADERS",
    "CREDENTIAL_PARAMS",
    "StreamSummary",
    "count_tokens",
    "extract_usage",
    "is_event_stream",
    "output_text",
    "prompt_text",
    "reassemble",
]
