"""Redaction: what the capture sidecar removes before a record leaves the process.

A :class:`Redactor` is built once from :class:`~shadow.config.RedactionConfig` and then called
per exchange, so everything it needs is compiled up front:

- :meth:`Redactor.headers` lower-cases names and replaces the values of credential headers:
  the names of :data:`~shadow.wire.credentials.CREDENTIAL_HEADERS`, ``redaction.headers``, and
  any name that says key, token, secret, auth, password, signature, session or cookie
  (:func:`capture.names.is_secret_name`); other values are scrubbed like text.
- :meth:`Redactor.query` does the same for query parameters (and form bodies), and scrubs
  the other values, percent-decoded ones included.
- :meth:`Redactor.body` replaces the values at ``redaction.json_paths``, then scrubs the
  bytes; numbers and containers under secret JSON keys are replaced in the parsed JSON. It
  never raises, whatever the bytes are.
- :meth:`Redactor.text` scrubs a ``str`` (reassembled streaming text, header values).

The scrubbers, each adding byte spans that are then replaced together: credential shapes
(:mod:`capture.secrets`), values after secret names (:mod:`capture.names`), e-mails and card
numbers, phones, IBANs and SSNs (:mod:`capture.pii`), then ``redaction.patterns``. The
built-in ones work on bytes, so a body that is not UTF-8 is scrubbed too; extra patterns keep
``str`` semantics and see such a body decoded losslessly (``surrogateescape``). Each family
and what it keeps is described in its module and in docs/security.md ("Redaction").

Cost, measured on a 2-core box by bench/redact_throughput.py: about 40 ms per MB of chat JSON
with long content, 36 ms per MB of an embeddings body, 0.1 ms for a 2 KB chat body; base64
images in data URIs are skipped. An extra pattern that starts with a literal is scanned as
fast as a built-in one; one that starts with ``\\b``, a class or a lookbehind costs about 2 ms
per 100 KB, so prefer ``ACCT-(?<!\\wACCT-)[0-9]{8}\\b`` to ``\\bACCT-[0-9]{8}\\b``.

Choices worth knowing:

- **JSON stays JSON.** The replacement may not contain quotes, backslashes or control
  characters, no built-in scrubber starts inside an escape sequence or ends between a
  backslash and the character it escapes, and a JSON number under a secret key is replaced in
  the parsed document (as a string), so scrubbing a valid JSON body leaves valid JSON. A secret
  that follows an escape (``"my key:\\nsk-..."``) is still found.
- **Secrets are words.** A key glued onto other letters (``xsk-...``, ``taskAKIA...``) is not
  one; this is what keeps ``task-123`` or ``gpt-4o-mini`` intact.
- **JSON paths** fan out over lists (``$.messages.content`` reaches every message) and
  replace whatever value they reach, whole. A body that does not parse (a cut-off body, say)
  is only scrubbed (secret names are still found in its bytes), so redact before truncating.
- **Form bodies** (``application/x-www-form-urlencoded``) are redacted like query strings;
  other percent-encoded text in bodies is not decoded.
- **Base64** hides secrets from every scrubber, so data URI payloads are passed over.
- Bodies must be decoded (``Content-Encoding``) before redaction: compressed bytes hide
  everything. :class:`~capture.exchange.RecordBuilder` decodes them, and reassembles event
  streams, before it calls the redactor.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote_from_bytes, unquote_to_bytes

import msgspec

from capture.names import find_named, is_secret_name
from capture.pii import find_cards, find_emails, find_personal
from capture.scan import ASCII_ALNUM, Span, splice
from capture.secrets import find_secrets
from shadow.config import RedactionConfig
from shadow.errors import ConfigError
from shadow.wire.credentials import CREDENTIAL_HEADERS, CREDENTIAL_PARAMS

__all__ = ["Redactor"]


_JSON_PATH = re.compile(r"\$(\.[A-Za-z0-9_-]+)+")
_QUERY_SAFE = "[]!$'()*,;:@/?"  # left as is when re-quoting a query value; never & = # + %

# Data URI payloads (";base64,...") of this size or more are not scrubbed when they are pure
# base64; bodies smaller than _DATA_URI_BODY_MIN are not searched for them (the search costs
# about as much as one scrubber).
_DATA_URI = re.compile(rb";base64,")
_DATA_URI_MIN = 4096
_DATA_URI_BODY_MIN = 64 * 1024
_BASE64 = ASCII_ALNUM + b"+/="
_JSON_SCHEMA_TYPES = frozenset({"object", "string", "array", "number", "integer", "boolean"})

_Finder = Callable[[bytes, list[Span]], object]


class Redactor:
    """Removes credentials and personal data from captured exchanges.

    Build one per process from ``redaction`` in ``shadow.toml`` (``None``: the defaults, every
    scrubber on). Its methods compile nothing, hold no state between calls and never raise
    on what they are given; their costs are in the module docstring.
    """

    def __init__(self, config: RedactionConfig | None = None) -> None:
        config = config if config is not None else RedactionConfig()
        if not _json_safe(config.replacement):
            raise ConfigError(
                f"redaction.replacement has value {config.replacement!r}; it must not contain "
                "quotes, backslashes or control characters"
            )
        self._replacement = config.replacement
        self._replacement_bytes = config.replacement.encode("utf-8")
        self._query_replacement = quote_from_bytes(self._replacement_bytes, safe=_QUERY_SAFE)
        self._secret_headers = CREDENTIAL_HEADERS | {
            name.strip().lower() for name in config.headers
        }
        self._paths = tuple(self._parse_path(path) for path in config.json_paths)
        self._patterns = tuple(self._compile(pattern) for pattern in config.patterns)
        finders: list[_Finder] = []
        if config.scrub_tokens:
            finders += [find_secrets, find_named]
        if config.scrub_emails:
            finders.append(find_emails)
        if config.scrub_cards:
            finders.append(find_cards)
        if config.scrub_personal:
            finders.append(find_personal)
        self._finders = tuple(finders)

    @staticmethod
    def _parse_path(path: str) -> tuple[str, ...]:
        if _JSON_PATH.fullmatch(path) is None:
            raise ConfigError(
                f"redaction.json_paths has value {path!r}; use a dotted path such as '$.user.email'"
            )
        return tuple(path.split(".")[1:])

    @staticmethod
    def _compile(pattern: str) -> re.Pattern[str]:
        try:
            return re.compile(pattern)
        except re.error as exc:  # RedactionConfig checks this too; a hand-built one may not
            raise ConfigError(
                f"redaction.patterns has value {pattern!r}; "
                f"it is not a valid regular expression ({exc})"
            ) from None

    # --- public API ---------------------------------------------------------------------------

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """Lower-case the names, replace secret headers' values and scrub the others.

        Names that differ only in case are joined with ``", "``, as in a TraceRecord.
        """
        names = [name.lower() for name in headers]
        values = list(headers.values())
        secret = [name in self._secret_headers or is_secret_name(name, True) for name in names]
        keep = [i for i, hidden in enumerate(secret) if not hidden]
        for i, clean in zip(keep, self._scrub_values([values[i] for i in keep]), strict=True):
            values[i] = clean
        out: dict[str, str] = {}
        for name, value, hidden in zip(names, values, secret, strict=True):
            if hidden:
                value = self._replacement
            out[name] = f"{out[name]}, {value}" if name in out else value
        return out

    def query(self, query: str) -> str:
        """Replace the values of secret parameters in a raw query string and scrub the rest."""
        if not query:
            return query
        parts = query.split("&")
        changed = False
        for i, part in enumerate(parts):
            name, eq, value = part.partition("=")
            if not (eq and value):
                continue
            if self._is_secret_param(name):
                parts[i] = f"{name}={self._query_replacement}"
                changed = True
            elif "%" in value or "+" in value:  # scrub what the value means, not how it's spelled
                raw = unquote_to_bytes(value.replace("+", " ").encode("utf-8", "surrogatepass"))
                clean = self._scrub(raw)[0]
                if clean != raw:
                    parts[i] = f"{name}={quote_from_bytes(clean, safe=_QUERY_SAFE)}"
                    changed = True
        # What is left is scrubbed as it stands, with the replacement spelled for a query.
        return self._scrub_text("&".join(parts) if changed else query, self._query_replacement)

    def body(self, data: bytes, content_type: str = "") -> bytes:
        """Redact JSON paths in a JSON body, then scrub the bytes; never raises."""
        if not data:
            return data
        kind = content_type.lower()
        if kind.startswith("application/x-www-form-urlencoded") and data.isascii():
            return self.query(data.decode("ascii")).encode("utf-8")
        json_like = "json" in kind or data[:64].lstrip()[:1] in (b"{", b"[")
        if self._paths and json_like:
            data = self._redact_paths(data)
        out, containers = self._scrub(data)
        if containers and json_like:  # "credentials": {...} or "pin": 1234, in parsed JSON
            structured = self._redact_containers(data)
            if structured is not data:
                out = self._scrub(structured)[0]
        return out

    def text(self, text: str) -> str:
        """Scrub a ``str``: the body scrubbers and ``redaction.patterns``."""
        return self._scrub_text(text, self._replacement)

    # --- internals ----------------------------------------------------------------------------

    def _scrub_values(self, values: list[str]) -> list[str]:
        """Scrub several short strings in one pass: joined by NUL, which no scrubber crosses."""
        joined = "\x00".join(values)
        if len(values) > 1 and joined.count("\x00") == len(values) - 1:
            data = joined.encode("utf-8", "surrogatepass")
            spans = self._find(data)[0]
            if spans:
                data = splice(data, spans, self._replacement_bytes)
                joined = data.decode("utf-8", "surrogatepass")
            parts = joined.split("\x00")
            if len(parts) == len(values):
                # Extra patterns are the user's: they may well cross a NUL, so run them per value.
                return [self._custom(part, self._replacement) for part in parts]
        return [self.text(value) for value in values]

    def _scrub_text(self, text: str, replacement: str) -> str:
        if not text:
            return text
        data = text.encode("utf-8", "surrogatepass")
        spans = self._find(data)[0]
        if spans:
            data = splice(data, spans, replacement.encode("utf-8"))
            text = data.decode("utf-8", "surrogatepass")
        return self._custom(text, replacement)

    def _custom(self, text: str, replacement: str) -> str:
        """``redaction.patterns`` applied to ``text``.

        A pattern that can match nothing (``a*``) must not sprinkle replacements everywhere.
        """
        for pattern in self._patterns:
            text = pattern.sub(lambda m: replacement if m.end() > m.start() else "", text)
        return text

    def _is_secret_param(self, name: str) -> bool:
        if "%" in name or "+" in name:
            raw = unquote_to_bytes(name.replace("+", " ").encode("utf-8", "surrogatepass"))
            name = raw.decode("utf-8", "replace")
        name = name.strip()
        return name.lower() in CREDENTIAL_PARAMS or is_secret_name(name, True)

    def _redact_paths(self, data: bytes) -> bytes:
        try:
            doc = msgspec.json.decode(data)
        except (msgspec.DecodeError, ValueError, RecursionError):
            return data  # not JSON after all (or cut off): the scrubbers still run
        if not self._replace_paths(doc):
            return data  # keep the bytes as sent when nothing was replaced
        return msgspec.json.encode(doc)

    def _replace_paths(self, doc: Any) -> bool:
        replaced = False
        for path in self._paths:
            last = len(path) - 1
            stack: list[tuple[Any, int]] = [(doc, 0)]
            while stack:  # a stack, not recursion: lists can nest deeper than Python recurses
                node, depth = stack.pop()
                if isinstance(node, list):
                    stack.extend((item, depth) for item in node)
                elif isinstance(node, dict) and path[depth] in node:
                    if depth == last:
                        node[path[depth]] = self._replacement
                        replaced = True
                    else:
                        stack.append((node[path[depth]], depth + 1))
        return replaced

    def _redact_containers(self, data: bytes) -> bytes:
        """Numbers under secret names, and every value in objects or lists under them."""
        try:
            doc = msgspec.json.decode(data)
        except (msgspec.DecodeError, ValueError, RecursionError):
            return data
        replaced = False
        stack: list[Any] = [doc]
        while stack:  # a stack, not recursion: lists can nest deeper than Python recurses
            node = stack.pop()
            if isinstance(node, list):
                stack.extend(node)
            elif isinstance(node, dict):
                for key, value in node.items():
                    secret = is_secret_name(str(key))
                    if isinstance(value, (dict, list)):
                        if secret and not _is_schema(value):
                            replaced = self._replace_leaves(value) or replaced
                        else:
                            stack.append(value)
                    elif secret and isinstance(value, (int, float)) and not isinstance(value, bool):
                        node[key] = self._replacement
                        replaced = True
        return msgspec.json.encode(doc) if replaced else data

    def _replace_leaves(self, doc: dict[Any, Any] | list[Any]) -> bool:
        replaced = False
        stack: list[Any] = [doc]
        while stack:
            node = stack.pop()
            items = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
            for key, value in items:
                if isinstance(value, (dict, list)):
                    stack.append(value)
                elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
                    node[key] = self._replacement
                    replaced = True
        return replaced

    def _scrub(self, data: bytes) -> tuple[bytes, bool]:
        """The scrubbed bytes, and whether a secret name held a container."""
        marker = _DATA_URI.search(data) if len(data) >= _DATA_URI_BODY_MIN else None
        if marker is None:
            return self._scrub_plain(data)
        # Images sent as data URIs are most of a vision request's bytes. Base64 hides any
        # secret from the scrubbers anyway, so scrub around the payloads, not through them.
        pieces: list[bytes] = []
        containers = False
        pos = 0
        while marker is not None:
            start = marker.end()
            end = data.find(b'"', start)  # a JSON string's end; base64 holds no quote
            end = len(data) if end == -1 else end
            if end - start >= _DATA_URI_MIN and not data[start:end].translate(None, _BASE64):
                clean, found = self._scrub_plain(data[pos:start])
                pieces += [clean, data[start:end]]
                containers = containers or found
                pos = end
            marker = _DATA_URI.search(data, max(start, pos))
        clean, found = self._scrub_plain(data[pos:])
        pieces.append(clean)
        return b"".join(pieces), containers or found

    def _scrub_plain(self, data: bytes) -> tuple[bytes, bool]:
        spans, containers = self._find(data)
        if spans:
            data = splice(data, spans, self._replacement_bytes)
        if self._patterns:
            text = data.decode("utf-8", "surrogateescape")  # lossless for any bytes
            clean = self._custom(text, self._replacement)
            if clean != text:
                data = clean.encode("utf-8", "surrogateescape")
        return data, containers

    def _find(self, data: bytes) -> tuple[list[Span], bool]:
        spans: list[Span] = []
        containers = False
        for finder in self._finders:
            containers = finder(data, spans) is True or containers
        return spans, containers


def _json_safe(text: str) -> bool:
    """Whether ``text`` can sit inside a JSON string as is (no quote, backslash, control)."""
    return not any(c in '"\\' or unicodedata.category(c) in ("Cc", "Cs") for c in text)


def _is_schema(value: object) -> bool:
    """Whether ``value`` is a JSON Schema (a tool's parameter named "password", say)."""
    return isinstance(value, dict) and (
        "properties" in value or str(value.get("type")) in _JSON_SCHEMA_TYPES
    )
