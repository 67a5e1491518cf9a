"""One generator, a thin encoder per wire format: what a request asks and what the model says.

Every format (:mod:`shadow.sim.chat`, :mod:`shadow.sim.responses`, :mod:`shadow.sim.anthropic`,
:mod:`shadow.sim.gemini`) parses its request into an :class:`Ask` and encodes the one
:class:`Reply` the generator (:class:`shadow.sim.app.MockLLM`) made of it: a body, or a stream
of events — ``head`` when the stream opens (before the prefill), one ``piece`` per output
token, ``tail`` at the end. So models, latency, faults and answers are the same in every format.

Prompt text (what the answer and ``prompt_tokens`` depend on) is the same in every format: the
system prompt, then each turn, joined by ``\\n``; a turn's text is its text parts (and tool
results) joined by ``\\n``. An OpenAI Chat request and its faithful translation to Anthropic
Messages or Gemini therefore get the same answer and the same token counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

import msgspec

from shadow.sim.generate import Answer
from shadow.sim.http import Headers, Scope, header
from shadow.sim.tools import Tool, ToolCall

__all__ = [
    "ERROR_STATUS",
    "Ask",
    "BadRequest",
    "ErrorKind",
    "Exchange",
    "Format",
    "Reply",
    "check_key",
    "intent_of",
    "json_object",
    "limit",
    "temperature",
]

ErrorKind = Literal["auth", "invalid", "method", "not_found", "overloaded", "rate_limit", "server"]

ERROR_STATUS: Final[Mapping[ErrorKind, int]] = {
    "auth": 401,
    "invalid": 400,
    "method": 405,
    "not_found": 404,
    "overloaded": 503,
    "rate_limit": 429,
    "server": 500,
}
"""The HTTP status of each kind of error (a format may use its own, as Anthropic's 529)."""


class BadRequest(Exception):
    """A request the format refuses (400, or ``kind``), naming the parameter at fault."""

    def __init__(self, message: str, param: str | None = None, kind: ErrorKind = "invalid"):
        super().__init__(message)
        self.param = param
        self.kind: ErrorKind = kind


@dataclass(frozen=True, kw_only=True)
class Ask:
    """What a request asks, whatever its format."""

    prompt: str
    max_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None
    intent: str | None = None
    stream: bool = False
    tools: tuple[Tool, ...] = ()
    tool_choice: str = "auto"
    """``auto``, ``none``, ``any`` or ``tool:NAME`` (:func:`shadow.sim.tools.call_tool`)."""
    after_tool_result: bool = False
    """The last turn is a tool result: the model answers it in text."""
    cache_prefix: str | None = None
    """The cacheable prefix of ``prompt`` (:mod:`shadow.sim.cache`), if the format has one."""


@dataclass(frozen=True, kw_only=True)
class Reply:
    """What the model answers: text or a tool call, with the usage every format reports."""

    number: int
    """The call's arrival number (ids are built from it)."""
    created: int
    model: str
    fingerprint: str
    prompt_tokens: int
    """All input tokens, cache reads and writes included (as OpenAI counts them)."""
    cache_read: int
    cache_write: int
    answer: Answer
    tool: ToolCall | None = None

    @property
    def pieces(self) -> list[str]:
        """The output, one token per piece: words of the text, or runs of the tool's JSON."""
        runs = self.tool.json.split(" ") if self.tool is not None else self.answer.words
        return [run if i == 0 else " " + run for i, run in enumerate(runs)]

    @property
    def text(self) -> str:
        """The answer text ("" for a tool call)."""
        return "" if self.tool is not None else self.answer.text

    @property
    def output_tokens(self) -> int:
        """Output tokens under the token rule: one per piece."""
        return len(self.pieces)

    @property
    def finish(self) -> Literal["length", "stop", "tool"]:
        """Why the output ended: a tool call, the length limit, or a natural stop."""
        if self.tool is not None:
            return "tool"
        return "length" if self.answer.finish_reason == "length" else "stop"

    def hex_id(self, width: int = 24) -> str:
        """An id unique to the call, ``width`` hex digits."""
        return f"{self.number:0{width}x}"


class Exchange(Protocol):
    """One request of a format, parsed, and how its reply is encoded."""

    ask: Ask
    stream_headers: Headers

    def body(self, reply: Reply) -> bytes:
        """The whole answer, when the request did not stream."""

    def head(self, reply: Reply) -> bytes:
        """Events sent as the stream opens, before the prefill (may be empty)."""

    def piece(self, reply: Reply, index: int, text: str) -> bytes:
        """The events of output token ``index`` (may be empty: sent later, whole)."""

    def tail(self, reply: Reply) -> bytes:
        """The events that end the stream."""


class Format(Protocol):
    """A wire format the server speaks: parsing its requests and encoding its errors."""

    def parse(self, raw: bytes, scope: Scope) -> Exchange:
        """The exchange a request opens, or :class:`BadRequest`."""

    def error(self, kind: ErrorKind, message: str, param: str | None) -> tuple[int, bytes]:
        """(status, body) of an error in this format."""


def json_object(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or :class:`BadRequest`."""
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def limit(value: object, name: str, *, required: bool = False) -> int | None:
    """An output-token limit (an integer >= 1), or :class:`BadRequest` naming ``name``."""
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadRequest(f"'{name}' must be an integer >= 1", param=name)
    return value


def temperature(value: object, name: str = "temperature", top: float = 2.0) -> float | None:
    """A sampling temperature in [0, top], or :class:`BadRequest`."""
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= top:
        raise BadRequest(f"'{name}' must be a number between 0 and {top:g}", param=name)
    return float(value)


_KEY_HEADERS: Final = (b"authorization", b"x-api-key", b"x-goog-api-key", b"api-key")


def check_key(scope: Scope, accepted: tuple[bytes, ...], *, query_key: bool = False) -> None:
    """Refuse (401) a request that sends a key only in another API's header.

    The server has no keys: any value is accepted, and so is no key at all; but a key sent
    where this API does not read it is refused, as the real API refuses it.
    """
    sent = [name for name in _KEY_HEADERS if header(scope, name) is not None]
    if sent and not query_key and not any(name in accepted for name in sent):
        names = " or ".join(name.decode() for name in accepted)
        raise BadRequest(f"no API key in {names} (this API does not read {sent[0].decode()})",
                         kind="auth")  # fmt: skip


def intent_of(body: Mapping[str, Any], scope: Scope) -> str | None:
    """The request's intent (``metadata.intent``, else the ``x-intent`` header): the routed
    profile sends hard intents to its large model."""
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("intent"), str):
        return str(metadata["intent"])
    return header(scope, b"x-intent")
