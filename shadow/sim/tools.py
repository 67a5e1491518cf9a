"""When a simulated model calls a tool, which one, and with what arguments.

Rule (the same in every wire format): a request that defines tools, whose last turn is not a
tool result, calls a tool when its tool choice demands one (OpenAI ``required`` or a named
function, Anthropic ``any`` or ``tool``, Gemini mode ``ANY``), never when it forbids them
(``none``), and otherwise with the model's ``tool_call_rate``, drawn from (prompt digest,
seed, model), so the same prompt always gets the same decision. The tool is the named one, or
one of the defined tools drawn the same way. After a tool result the model answers in text.

Arguments follow the tool's JSON Schema: each required property (every property when none is
required) gets a value of its type — an ``enum``'s member, three words of the answer for a
string, a small integer, a number with one decimal, a boolean, a one-string array, an empty
object. The arguments are JSON with ``", "`` and ``": "`` separators; under the token rule
each whitespace-separated run is one output token, and a stream sends one token per event.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Tool", "ToolCall", "call_tool"]


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool the request defines: its name and the JSON Schema of its arguments."""

    name: str
    schema: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model makes: an id (hex, each format adds its prefix), name, arguments."""

    id: str
    name: str
    arguments: Mapping[str, Any]

    @property
    def json(self) -> str:
        """The arguments as the JSON text that is streamed (one token per whitespace run)."""
        return json.dumps(self.arguments, separators=(", ", ": "))


def _rng(*parts: bytes | int | str) -> random.Random:
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        h.update(part if isinstance(part, bytes) else str(part).encode())
        h.update(b"\x00")
    return random.Random(int.from_bytes(h.digest(), "big"))


def call_tool(
    tools: Sequence[Tool],
    choice: str,
    *,
    digest: bytes,
    seed: int,
    model_id: str,
    rate: float,
    words: Sequence[str],
) -> ToolCall | None:
    """The call the model makes, or None when it answers in text (see the module docstring).

    ``choice`` is ``auto``, ``none``, ``any`` (a tool must be called) or ``tool:NAME``.
    """
    if not tools or choice == "none":
        return None
    rng = _rng(digest, seed, model_id, "tool")
    draw = rng.random()
    if choice == "auto" and draw >= rate:
        return None
    named = choice.removeprefix("tool:") if choice.startswith("tool:") else None
    tool = next((t for t in tools if t.name == named), None) or tools[rng.randrange(len(tools))]
    call_id = hashlib.blake2b(digest + model_id.encode(), digest_size=12).hexdigest()
    return ToolCall(call_id, tool.name, _arguments(tool.schema, rng, words))


def _arguments(
    schema: Mapping[str, Any], rng: random.Random, words: Sequence[str]
) -> dict[str, Any]:
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return {}
    required = schema.get("required")
    names = [n for n in required if n in properties] if isinstance(required, list) else []
    values: dict[str, Any] = {}
    for name in names or list(properties):
        spec = properties[name]
        values[str(name)] = _value(spec if isinstance(spec, Mapping) else {}, rng, words)
    return values


def _value(spec: Mapping[str, Any], rng: random.Random, words: Sequence[str]) -> Any:
    enum = spec.get("enum")
    if isinstance(enum, list) and enum:
        return enum[rng.randrange(len(enum))]
    kind = spec.get("type")
    if isinstance(kind, list):  # ["string", "null"]
        kind = next((k for k in kind if k != "null"), "string")
    kind = str(kind).lower()  # Gemini writes types in upper case
    if kind == "integer":
        return rng.randint(1, 10)
    if kind == "number":
        return round(rng.uniform(0, 100), 1)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "array":
        return [_phrase(rng, words)]
    if kind == "object":
        return {}
    return _phrase(rng, words)


def _phrase(rng: random.Random, words: Sequence[str]) -> str:
    if not words:
        return "value"
    start = rng.randrange(len(words))
    return " ".join(w.strip(".,").lower() for w in words[start : start + 3]) or "value"
