"""An OpenAI Chat Completions request as an Anthropic Messages or Gemini generateContent one.

:func:`translate_request` maps the whole request or refuses it with :class:`Untranslatable`
(its ``detail`` says what could not be mapped): a request is never sent half-translated. The
mapping, key by key, is docs/architecture.md's "Translation" table; in short:

- ``system`` / ``developer`` messages before the first turn → Anthropic's top-level
  ``system``, Gemini's ``systemInstruction``; ``user`` / ``assistant`` turns → ``messages``
  with content blocks (Anthropic) or ``contents`` with roles ``user`` / ``model`` and
  ``parts`` (Gemini); consecutive turns of one role are merged;
- ``tools[].function`` → ``tools[]`` ``{name, description, input_schema}`` /
  ``tools[].functionDeclarations`` (``parametersJsonSchema``); assistant ``tool_calls`` →
  ``tool_use`` blocks / ``functionCall`` parts; ``tool`` messages → ``tool_result`` blocks in a
  user turn / ``functionResponse`` parts;
- ``max_tokens`` (or ``max_completion_tokens``) → ``max_tokens`` (Anthropic requires it:
  :data:`ANTHROPIC_MAX_TOKENS` when absent) / ``generationConfig.maxOutputTokens``;
  ``temperature``, ``top_p``, ``stop`` → ``stop_sequences`` / ``stopSequences``;
- ``stream`` → ``"stream": true`` / the ``:streamGenerateContent?alt=sse`` endpoint;
- the model is the arm's (``body_overrides.model``): Anthropic's ``model``, Gemini's path.

Keys with no meaning for the answer (``user``, ``metadata``, ``store``, ``stream_options``,
...) are dropped; any other key this module does not know refuses the request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import msgspec

__all__ = [
    "ANTHROPIC_MAX_TOKENS",
    "Format",
    "Translated",
    "Untranslatable",
    "translate_request",
]

Format = Literal["anthropic", "gemini", "openai"]

ANTHROPIC_MAX_TOKENS: Final = 4096
"""``max_tokens`` sent to Anthropic when the captured request sets none (it is required there;
OpenAI's own default is the model's limit, so a long answer may be cut where it was not)."""

_DROPPED: Final = frozenset(
    {"model", "user", "metadata", "store", "service_tier", "stream_options", "prompt_cache_key"}
)
"""Captured keys that do not change the answer: not translated, not a reason to refuse."""


class Untranslatable(Exception):
    """The request cannot be translated whole; ``detail`` says what could not be mapped."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Translated:
    """The translated request: where it goes and what it says."""

    path: str
    query: str
    body: dict[str, Any]
    stream: bool


def translate_request(document: Mapping[str, Any], to: Format, *, model: str) -> Translated:
    """``document`` (an OpenAI Chat Completions body) as a request of API ``to`` for ``model``.

    Raises:
        Untranslatable: some part of the request has no equivalent in ``to``.
    """
    if to == "openai":
        raise Untranslatable("openai requests are sent as captured")  # the caller never asks
    reader = _Reader(document, to)
    if to == "anthropic":
        body = _anthropic(reader, model)
        return Translated("/v1/messages", "", body, reader.stream)
    body = _gemini(reader)
    name = model.removeprefix("models/")
    if reader.stream:
        return Translated(f"/v1beta/models/{name}:streamGenerateContent", "alt=sse", body, True)
    return Translated(f"/v1beta/models/{name}:generateContent", "", body, False)


class _Reader:
    """The captured request's keys, each read once; a key left unread refuses the request."""

    def __init__(self, document: Mapping[str, Any], to: Format) -> None:
        self.document = document
        self.to = to
        self.unread = set(document) - _DROPPED
        messages = self.take("messages")
        if not isinstance(messages, list) or not messages:
            raise Untranslatable("messages is missing or empty")
        self.messages: list[Any] = messages
        self.stream = bool(self.take("stream"))
        n = self.take("n")
        if n not in (None, 1):
            raise Untranslatable("n > 1")
        for key in ("logprobs", "parallel_tool_calls"):
            value = self.take(key)
            if key == "logprobs" and value:
                raise Untranslatable("logprobs")
            if key == "parallel_tool_calls" and value is False and to == "gemini":
                raise Untranslatable("parallel_tool_calls = false to gemini")
        if self.take("top_logprobs") is not None:
            raise Untranslatable("top_logprobs")
        self.parallel = self.document.get("parallel_tool_calls") is not False

    def take(self, key: str) -> Any:
        self.unread.discard(key)
        return self.document.get(key)

    def number(self, key: str) -> float | None:
        value = self.take(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Untranslatable(f"{key} is not a number")
        return value

    def max_tokens(self) -> float | None:
        newer, older = self.number("max_completion_tokens"), self.number("max_tokens")
        return newer if newer is not None else older

    def stop(self) -> list[str] | None:
        value = self.take("stop")
        if value is None:
            return None
        stops = [value] if isinstance(value, str) else value
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise Untranslatable("stop is not a string or a list of strings")
        return stops or None

    def finish(self) -> None:
        modalities = self.take("modalities")
        if modalities not in (None, ["text"]):
            raise Untranslatable("modalities other than text")
        if self.unread:
            raise Untranslatable(f"{sorted(self.unread)[0]} has no {self.to} equivalent")


# -- Anthropic --------------------------------------------------------------------------------


def _anthropic(reader: _Reader, model: str) -> dict[str, Any]:
    system, turns = _split_system(reader.messages)
    body: dict[str, Any] = {"model": model}
    max_tokens = reader.max_tokens()
    body["max_tokens"] = int(max_tokens) if max_tokens is not None else ANTHROPIC_MAX_TOKENS
    if system:
        body["system"] = system
    messages: list[dict[str, Any]] = []
    for message in turns:
        role, blocks = _anthropic_turn(message)
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})
    body["messages"] = messages
    temperature = reader.number("temperature")
    if temperature is not None:
        if temperature > 1:
            raise Untranslatable("temperature > 1 to anthropic")
        body["temperature"] = temperature
    top_p = reader.number("top_p")
    if top_p is not None:
        body["top_p"] = top_p
    stops = reader.stop()
    if stops:
        body["stop_sequences"] = stops
    for key in ("frequency_penalty", "presence_penalty"):
        if reader.number(key):
            raise Untranslatable(f"{key} to anthropic")
    response_format = reader.take("response_format")
    if response_format is not None and _format_type(response_format) != "text":
        raise Untranslatable(f"response_format {_format_type(response_format)} to anthropic")
    tools = reader.take("tools")
    if tools:
        body["tools"] = [
            {"name": f["name"], "description": f.get("description", ""), "input_schema": schema}
            for f, schema in _functions(tools)
        ]
    choice = _tool_choice(reader.take("tool_choice"), reader.to)
    if choice is not None or not reader.parallel:
        choice = choice or {"type": "auto"}
        if not reader.parallel and choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
        body["tool_choice"] = choice
    if reader.stream:
        body["stream"] = True
    reader.finish()
    return body


def _anthropic_turn(message: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    role = message.get("role")
    if role == "tool":
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str):
            raise Untranslatable("a tool message without tool_call_id")
        text = _text_only(message.get("content"), "tool message")
        return "user", [{"type": "tool_result", "tool_use_id": call_id, "content": text}]
    if role == "user":
        return "user", _parts(message.get("content"), _anthropic_part)
    if role == "assistant":
        blocks = _parts(message.get("content"), _anthropic_part)
        for call_id, name, arguments in _tool_calls(message):
            blocks.append({"type": "tool_use", "id": call_id, "name": name, "input": arguments})
        return "assistant", blocks
    raise Untranslatable(f"a {role} message")


def _anthropic_part(part: Mapping[str, Any]) -> dict[str, Any]:
    kind = part.get("type")
    if kind == "text":
        return {"type": "text", "text": _str(part.get("text"), "a text part")}
    if kind == "image_url":
        url = _image_url(part)
        if url.startswith("data:"):
            mime, data = _data_url(url)
            return {"type": "image", "source": {"type": "base64", "media_type": mime, "data": data}}
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise Untranslatable(f"a {kind} content part")


# -- Gemini -----------------------------------------------------------------------------------


def _gemini(reader: _Reader) -> dict[str, Any]:
    system, turns = _split_system(reader.messages)
    body: dict[str, Any] = {}
    names: dict[str, str] = {}  # tool_call_id -> function name, for the functionResponse
    contents: list[dict[str, Any]] = []
    for message in turns:
        role, parts = _gemini_turn(message, names)
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    body["contents"] = contents
    if system:
        body["systemInstruction"] = {"parts": [{"text": system}]}
    config: dict[str, Any] = {}
    max_tokens = reader.max_tokens()
    pairs = (
        ("maxOutputTokens", None if max_tokens is None else int(max_tokens)),
        ("temperature", reader.number("temperature")),
        ("topP", reader.number("top_p")),
        ("stopSequences", reader.stop()),
        ("frequencyPenalty", reader.number("frequency_penalty")),
        ("presencePenalty", reader.number("presence_penalty")),
        ("seed", reader.number("seed")),
    )
    config.update({key: value for key, value in pairs if value is not None})
    response_format = reader.take("response_format")
    kind = _format_type(response_format) if response_format is not None else "text"
    if kind in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
    if kind == "json_schema":
        schema = response_format.get("json_schema")
        if not isinstance(schema, Mapping) or not isinstance(schema.get("schema"), Mapping):
            raise Untranslatable("response_format json_schema without a schema")
        config["responseJsonSchema"] = schema["schema"]
    elif kind not in ("text", "json_object"):
        raise Untranslatable(f"response_format {kind} to gemini")
    if config:
        body["generationConfig"] = config
    tools = reader.take("tools")
    if tools:
        declarations = [
            {"name": f["name"], "description": f.get("description", ""), "parametersJsonSchema": s}
            for f, s in _functions(tools)
        ]
        body["tools"] = [{"functionDeclarations": declarations}]
    choice = _tool_choice(reader.take("tool_choice"), reader.to)
    if choice is not None:
        body["toolConfig"] = {"functionCallingConfig": choice}
    reader.finish()
    return body


def _gemini_turn(message: Mapping[str, Any], names: dict[str, str]) -> tuple[str, list[Any]]:
    role = message.get("role")
    if role == "tool":
        call_id = message.get("tool_call_id")
        name = names.get(call_id) if isinstance(call_id, str) else None
        if name is None:
            raise Untranslatable("a tool message answering no earlier tool call")
        text = _text_only(message.get("content"), "tool message")
        try:
            value = msgspec.json.decode(text)
        except (msgspec.DecodeError, RecursionError):
            value = None
        response = value if isinstance(value, dict) else {"result": text}
        return "user", [{"functionResponse": {"name": name, "response": response}}]
    if role == "user":
        return "user", _parts(message.get("content"), _gemini_part)
    if role == "assistant":
        parts = _parts(message.get("content"), _gemini_part)
        for call_id, name, arguments in _tool_calls(message):
            names[call_id] = name
            parts.append({"functionCall": {"name": name, "args": arguments}})
        return "model", parts
    raise Untranslatable(f"a {role} message")


def _gemini_part(part: Mapping[str, Any]) -> dict[str, Any]:
    kind = part.get("type")
    if kind == "text":
        return {"text": _str(part.get("text"), "a text part")}
    if kind == "image_url":
        url = _image_url(part)
        if not url.startswith("data:"):
            raise Untranslatable("an image by URL to gemini")
        mime, data = _data_url(url)
        return {"inlineData": {"mimeType": mime, "data": data}}
    raise Untranslatable(f"a {kind} content part")


# -- shared -----------------------------------------------------------------------------------


def _split_system(messages: list[Any]) -> tuple[str, list[Mapping[str, Any]]]:
    """The leading system/developer messages as one text, and the turns after them."""
    system: list[str] = []
    turns: list[Mapping[str, Any]] = []
    for message in messages:
        if not isinstance(message, Mapping):
            raise Untranslatable("a message that is not an object")
        if message.get("role") in ("system", "developer"):
            if turns:
                raise Untranslatable("a system message after the first turn")
            system.append(_text_only(message.get("content"), "system message"))
        else:
            turns.append(message)
    if not turns:
        raise Untranslatable("no user or assistant turn")
    return "\n\n".join(system), turns


def _parts(content: object, part: Callable[[Mapping[str, Any]], dict[str, Any]]) -> list[Any]:
    """Content as translated parts: a string is one text part, a list part by part."""
    if content is None:
        return []
    if isinstance(content, str):
        return [part({"type": "text", "text": content})] if content else []
    if not isinstance(content, list):
        raise Untranslatable("content that is neither text nor a list of parts")
    out = []
    for item in content:
        if not isinstance(item, Mapping):
            raise Untranslatable("a content part that is not an object")
        if item.get("type") == "text" and item.get("text") == "":
            continue
        out.append(part(item))
    return out


def _text_only(content: object, what: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            p["text"]
            for p in content
            if isinstance(p, Mapping) and p.get("type") == "text" and _is_str(p.get("text"))
        ]
        if len(texts) == len(content):
            return "".join(texts)
    raise Untranslatable(f"a {what} that is not text")


def _tool_calls(message: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """``(id, name, arguments)`` of an assistant message's function calls."""
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise Untranslatable("tool_calls is not a list")
    out = []
    for call in calls:
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or call.get("type", "function") != "function":
            raise Untranslatable("a tool call that is not a function call")
        try:
            arguments = msgspec.json.decode(function.get("arguments") or "{}")
        except (msgspec.DecodeError, TypeError, RecursionError):
            raise Untranslatable("tool call arguments that are not JSON") from None
        name = _str(function.get("name"), "a tool call's name")
        out.append((_str(call.get("id"), "a tool call's id"), name, arguments))
    return out


def _functions(tools: object) -> list[tuple[Mapping[str, Any], Any]]:
    """Each function tool's definition and its parameters' schema."""
    if not isinstance(tools, list):
        raise Untranslatable("tools is not a list")
    out = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(function, Mapping) or tool.get("type") != "function":
            raise Untranslatable("a tool that is not a function")
        _str(function.get("name"), "a tool's name")
        schema = function.get("parameters") or {"type": "object", "properties": {}}
        out.append((function, schema))
    return out


def _tool_choice(choice: object, to: Format) -> dict[str, Any] | None:
    if choice is None:
        return None
    gemini = to == "gemini"
    if choice in ("auto", "none", "required"):
        if gemini:
            return {"mode": {"auto": "AUTO", "none": "NONE", "required": "ANY"}[str(choice)]}
        return {"type": {"auto": "auto", "none": "none", "required": "any"}[str(choice)]}
    function = choice.get("function") if isinstance(choice, Mapping) else None
    if isinstance(function, Mapping) and isinstance(function.get("name"), str):
        if gemini:
            return {"mode": "ANY", "allowedFunctionNames": [function["name"]]}
        return {"type": "tool", "name": function["name"]}
    raise Untranslatable("a tool_choice other than auto, none, required or one function")


def _format_type(response_format: object) -> str:
    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    return kind if isinstance(kind, str) else "unknown"


def _image_url(part: Mapping[str, Any]) -> str:
    holder = part.get("image_url")
    url = holder.get("url") if isinstance(holder, Mapping) else holder
    return _str(url, "an image_url part")


def _data_url(url: str) -> tuple[str, str]:
    head, _, data = url.partition(",")
    if not head.endswith(";base64") or not data:
        raise Untranslatable("an image data URL that is not base64")
    return head[len("data:") : -len(";base64")] or "application/octet-stream", data


def _str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise Untranslatable(f"{what} is not a string")
    return value


def _is_str(value: object) -> bool:
    return isinstance(value, str)
