"""Redaction: what the capture sidecar removes before a record leaves the process.

A :class:`Redactor` is built once from :class:`~shadow.config.RedactionConfig` and then called
per exchange, so everything it needs is compiled up front:

- :meth:`Redactor.headers` lower-cases names and replaces the values of credential headers
  (``authorization``, ``cookie``, ``x-api-key``, ... from
  :data:`~shadow.wire.credentials.CREDENTIAL_HEADERS`, plus ``redaction.headers``); other
  values are scrubbed like text.
- :meth:`Redactor.query` replaces the values of credential parameters (``api_key``,
  ``token``, ``sig``, ... from :data:`~shadow.wire.credentials.CREDENTIAL_PARAMS`) and scrubs
  the rest, percent-decoded values included.
- :meth:`Redactor.body` replaces the values at ``redaction.json_paths`` in JSON bodies, then
  scrubs the bytes; it never raises, whatever the bytes are.
- :meth:`Redactor.text` scrubs a ``str`` (reassembled streaming text, header values).

Scrubbers find e-mail addresses, payment card numbers, ``Bearer`` tokens, provider key shapes
(OpenAI, Anthropic, AWS, GitHub, Slack, Google, Hugging Face, GitLab, Stripe), JWTs and private
key PEM blocks, then ``redaction.patterns``. The built-in ones are bytes patterns compiled at
import, so a body that is not UTF-8 is scrubbed too; extra patterns keep ``str`` semantics and
see such a body decoded losslessly (``surrogateescape``).

Cost, measured on a 2-core box: about 17 us for a 2 KB chat body, 0.5 ms per 100 KB of text or
JSON (0.6-0.8 ms when it is mostly numbers), 5 ms per MB of binary; base64 images in data URIs
are skipped. An extra pattern that starts with a literal is scanned as fast as a built-in one;
one that starts with ``\\b``, a class or a lookbehind costs about 2 ms per 100 KB, so prefer
``ACCT-(?<!\\wACCT-)[0-9]{8}\\b`` to ``\\bACCT-[0-9]{8}\\b``.

Choices worth knowing:

- **JSON stays JSON.** The replacement may not contain quotes, backslashes or control
  characters, and no built-in scrubber starts inside an escape sequence or ends between a
  backslash and the character it escapes, so scrubbing a valid JSON body leaves valid JSON.
  A secret that follows an escape (``"my key:\\nsk-..."``) is still found.
- **Secrets are words.** A key glued onto other letters (``xsk-...``, ``taskAKIA...``) is not
  one; this is what keeps ``task-123`` or ``gpt-4o-mini`` intact.
- **Card numbers** are 13-19 digits, written as one run or as a group of four and groups of
  three to six (4-4-4-4, 4-6-5, 4-4-4-4-3) split by single spaces or dashes, that start
  with 2-6 (the card industries) and pass the Luhn check. The trade-off: an ordinary 13-19
  digit id that starts with 2-6 passes Luhn one time in ten, so a tenth of those are
  redacted. Millisecond and nanosecond timestamps (``17...``), decimal fractions and digits
  glued to letters (hex ids, hashes) never are; nor are cards of industries 1, 7, 8 and 9
  (airline, fleet, national).
- **Bearer tokens** follow ``Bearer`` or ``bearer``, which is kept; the token must hold a
  digit or be 20+ characters long, so "the bearer of bad news" is prose, not a credential.
- **AWS secret access keys** have no shape of their own: they are found after an
  ``aws_secret_access_key`` name (any case, ``=`` or ``:``, quoted or not).
- **JSON paths** fan out over lists (``$.messages.content`` reaches every message) and
  replace whatever value they reach, whole. A body that does not parse (a cut-off body, say)
  is only scrubbed, so redact before truncating.
- **Form bodies** (``application/x-www-form-urlencoded``) are redacted like query strings;
  other percent-encoded text in bodies is not decoded.
- **Base64** hides secrets from every scrubber, so data URI payloads are passed over.
- Bodies must be decoded (``Content-Encoding``) before redaction: compressed bytes hide
  everything.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote_from_bytes, unquote_to_bytes

import msgspec

from shadow.config import RedactionConfig
from shadow.errors import ConfigError
from shadow.wire.credentials import CREDENTIAL_HEADERS, CREDENTIAL_PARAMS

__all__ = ["Redactor"]


_JSON_PATH = re.compile(r"\$(\.[A-Za-z0-9_-]+)+")
_QUERY_SAFE = "[]!$'()*,;:@/?"  # left as is when re-quoting a query value; never & = # + %

# --- scrubbers --------------------------------------------------------------------------------
# Python's regex engine scans fast only for a literal first character (about 1 ns a byte);
# a pattern that starts with a character class or an alternation of classes costs 5-20 ns a
# byte. So each pattern below starts with one literal "anchor" byte, checks the few bytes
# before it with a lookbehind, and reports how far the secret reaches back from the anchor.


def _word_start(prefix: bytes) -> bytes:
    """A lookbehind, placed right after ``prefix``: the prefix starts a word.

    A word also starts right after a JSON escape such as ``\\n`` or ``\\u2014``, whose
    letters and digits are not part of the secret that follows it.
    """
    return (
        rb"(?:(?<![A-Za-z0-9_]" + prefix + rb")|(?<=\\[nrtbf]" + prefix + rb")"
        rb"|(?<=\\u[0-9A-Fa-f]{4}" + prefix + rb"))"
    )


def _word_after(prefix: bytes) -> bytes:
    """A lookbehind, placed right after ``prefix``: the prefix is there and starts a word."""
    return rb"(?<=" + prefix + rb")" + _word_start(prefix)


# Key shapes anchored on "-"; group name -> bytes of the secret before the anchor. The first
# lookbehind turns away most dashes (negative numbers, dates, kebab-case) in one step.
_DASH = re.compile(
    rb"-(?:(?<=[abkprst]-)(?:"
    rb"(?P<sk>" + _word_after(rb"sk-") + rb"[A-Za-z0-9_-]{20,})"  # OpenAI, Anthropic (sk-ant-)
    rb"|(?P<xox>" + _word_after(rb"xox[abprs]-") + rb"[A-Za-z0-9-]{10,})"  # Slack
    rb"|(?P<glpat>" + _word_after(rb"glpat-") + rb"[A-Za-z0-9_-]{20,})"  # GitLab
    rb")"
    # A PEM block to its END line, or (cut off) to the end of the JSON string or the input.
    # Escape pairs are consumed whole, so the match never ends inside one; NUL stops it too
    # (Redactor.headers joins values with NUL).
    rb"|(?P<pem>----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
    rb"(?:[^\"\\\x00-]++|\\[^\x00]|-(?!----END ))*+"
    rb"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----)?)"
    rb")"
)
_DASH_BACK = {"sk": 2, "xox": 4, "glpat": 5, "pem": 0}

# Key shapes anchored on "_", and the value after an aws_secret_access_key name.
_UNDER = re.compile(
    rb"_(?<=[bfkoprsuS]_)(?:"
    rb"(?P<stripe>" + _word_after(rb"[sr]k_") + rb"(?:live|test)_[A-Za-z0-9]{16,})"
    rb"|(?P<gh>" + _word_after(rb"gh[pousr]_") + rb"[A-Za-z0-9]{30,})"
    rb"|(?P<ghpat>" + _word_after(rb"github_") + rb"pat_[A-Za-z0-9_]{22,})"
    rb"|(?P<hf>" + _word_after(rb"hf_") + rb"[A-Za-z0-9]{30,})"
    # Quotes around the name and the value may be escaped, once or (JSON in JSON) more.
    rb"|(?<=[Aa][Ww][Ss]_)(?i:secret_access_key)(?:\\*[\"'])?(?:\s|\\[nrt])*[:=]"
    rb"(?:\s|\\[nrt])*(?:\\*[\"'])?(?P<aws>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
    rb")"
)
_UNDER_BACK = {"stripe": 2, "gh": 3, "ghpat": 6, "hf": 2}

# AWS access key ids (AKIA long-lived, ASIA temporary) and Google API keys.
_UPPER_A = re.compile(
    rb"A(?=KIA|SIA|Iza)"  # first: most capital A's fail here, before the lookbehinds
    + _word_start(rb"A")
    + rb"(?:(?:KIA|SIA)[0-9A-Z]{16}(?![0-9A-Za-z])|Iza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-]))"
)

# JWTs: anchored on the dot before the payload (always "eyJ", base64 of '{"'); the header
# before it is found by walking back.
_JWT = re.compile(rb"\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")

# "Bearer" or "bearer" and the token after it (RFC 6750's b64token): the token must hold a
# digit or be 20+ characters long, which tells it from prose. Anchored on "arer": a pattern
# that starts with "[Bb]" or "(?i)" scans ten times slower.
_BEARER = re.compile(
    rb"arer(?<=[Bb]earer)"
    + _word_start(rb"[Bb]earer")
    + rb"[ \t]+(?P<token>(?=[A-Za-z._~+/-]*[0-9]|[A-Za-z0-9._~+/-]{20})[A-Za-z0-9._~+/-]{8,}=*)"
)

# E-mail addresses, anchored on "@"; the local part is found by walking back.
_EMAIL = re.compile(
    rb"@(?<=[A-Za-z0-9._%+-]@)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}(?![A-Za-z0-9-])"
)
_ASCII_ALNUM = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_ALNUM = frozenset(_ASCII_ALNUM[i : i + 1] for i in range(len(_ASCII_ALNUM)))  # 1-byte slices
_LOCAL_TABLE = bytes(ord("l") if b in _ASCII_ALNUM + b"._%+-" else ord("x") for b in range(256))
_B64URL = frozenset(_ASCII_ALNUM + b"_-")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ESCAPE_LETTERS = frozenset(bytes([c]) for c in b'"\\/bfnrt')  # 1-byte slices

# Card numbers. The input is first translated so digits read "0", spaces and dashes "s",
# dots ".", backslashes "b", "u" itself and everything else "x". A card is then a first group
# of four digits and a separator ("0000s", the grouped forms) or thirteen digits in a row, at
# the start of a digit run (not after a digit or a decimal point, unless the digits before are
# a JSON "\\uXXXX" escape), followed by digits and single separators; the lookaheads keep
# runs of 13 or more digits. Literal prefixes of digits keep the scan fast on prose and the
# attempts few on numeric JSON (token ids); long decimal fractions are masked first (see
# _find_cards). The group layout and the Luhn check are done in Python, on the runs found.
_CARD_CLASSES = {
    **dict.fromkeys(b"0123456789", b"0"),
    **dict.fromkeys(b" -", b"s"),
    ord("."): b".",
    ord("\\"): b"b",
    ord("u"): b"u",
}
_CARD_TABLE = b"".join(_CARD_CLASSES.get(b, b"x") for b in range(256))
_CARD_RUNS = (
    re.compile(rb"0000s(?:(?<![0.]0000s)|(?<=bu[0x]{4}0000s))(?=(?:s?0){9})(?:0|s0)*"),
    re.compile(rb"0000000000000(?<![0.]0000000000000)(?:0|s0)*"),
)
_LONG_FRACTION = b"." + b"0" * 13
_MASKED_FRACTION = b"." + b"d" * 13
_DIGITS = re.compile(rb"[0-9]+")
_CARD_INDUSTRIES = b"23456"
# An ASCII digit d -> the value Luhn adds for it when doubled (2d, minus 9 past 9).
_LUHN_DOUBLE = bytes((2 * (b - 48) - 9 * (b > 52)) if 48 <= b <= 57 else 0 for b in range(256))

# Data URI payloads (";base64,...") of this size or more are not scrubbed when they are pure
# base64; bodies smaller than _DATA_URI_BODY_MIN are not searched for them (the search costs
# about as much as one scrubber).
_DATA_URI = re.compile(rb";base64,")
_DATA_URI_MIN = 4096
_DATA_URI_BODY_MIN = 64 * 1024
_BASE64 = _ASCII_ALNUM + b"+/="

_Span = tuple[int, int]
_Finder = Callable[[bytes, list[_Span]], None]


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
            finders.append(self._find_tokens)
        if config.scrub_emails:
            finders.append(self._find_emails)
        if config.scrub_cards:
            finders.append(self._find_cards)
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
        keep = [i for i, name in enumerate(names) if name not in self._secret_headers]
        for i, clean in zip(keep, self._scrub_values([values[i] for i in keep]), strict=True):
            values[i] = clean
        out: dict[str, str] = {}
        for name, value in zip(names, values, strict=True):
            if name in self._secret_headers:
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
                clean = self._scrub(raw)
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
        if self._paths and ("json" in kind or data[:64].lstrip()[:1] in (b"{", b"[")):
            data = self._redact_paths(data)
        return self._scrub(data)

    def text(self, text: str) -> str:
        """Scrub a ``str``: the body scrubbers and ``redaction.patterns``."""
        return self._scrub_text(text, self._replacement)

    # --- internals ----------------------------------------------------------------------------

    def _scrub_values(self, values: list[str]) -> list[str]:
        """Scrub several short strings in one pass: joined by NUL, which no scrubber crosses."""
        joined = "\x00".join(values)
        if len(values) > 1 and joined.count("\x00") == len(values) - 1:
            data = joined.encode("utf-8", "surrogatepass")
            spans = self._find(data)
            if spans:
                data = _splice(data, spans, self._replacement_bytes)
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
        spans = self._find(data)
        if spans:
            data = _splice(data, spans, replacement.encode("utf-8"))
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
        return name.strip().lower() in CREDENTIAL_PARAMS

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

    def _scrub(self, data: bytes) -> bytes:
        marker = _DATA_URI.search(data) if len(data) >= _DATA_URI_BODY_MIN else None
        if marker is None:
            return self._scrub_plain(data)
        # Images sent as data URIs are most of a vision request's bytes. Base64 hides any
        # secret from the scrubbers anyway, so scrub around the payloads, not through them.
        pieces: list[bytes] = []
        pos = 0
        while marker is not None:
            start = marker.end()
            end = data.find(b'"', start)  # a JSON string's end; base64 holds no quote
            end = len(data) if end == -1 else end
            if end - start >= _DATA_URI_MIN and not data[start:end].translate(None, _BASE64):
                pieces.append(self._scrub_plain(data[pos:start]))
                pieces.append(data[start:end])
                pos = end
            marker = _DATA_URI.search(data, max(start, pos))
        pieces.append(self._scrub_plain(data[pos:]))
        return b"".join(pieces)

    def _scrub_plain(self, data: bytes) -> bytes:
        spans = self._find(data)
        if spans:
            data = _splice(data, spans, self._replacement_bytes)
        if self._patterns:
            text = data.decode("utf-8", "surrogateescape")  # lossless for any bytes
            clean = self._custom(text, self._replacement)
            if clean != text:
                data = clean.encode("utf-8", "surrogateescape")
        return data

    def _find(self, data: bytes) -> list[_Span]:
        spans: list[_Span] = []
        for finder in self._finders:
            finder(data, spans)
        return spans

    @staticmethod
    def _find_tokens(data: bytes, spans: list[_Span]) -> None:
        # `in` on one byte is a memchr: skipping a scan that cannot match is nearly free.
        if b"-" in data:
            for m in _DASH.finditer(data):
                name = m.lastgroup or "pem"
                spans.append((m.start() - _DASH_BACK[name], m.end()))
        if b"_" in data:
            for m in _UNDER.finditer(data):
                name = m.lastgroup or "aws"
                if name == "aws":
                    spans.append(m.span(name))
                else:
                    spans.append((m.start() - _UNDER_BACK[name], m.end()))
        if b"A" in data:
            spans.extend(m.span() for m in _UPPER_A.finditer(data))
        if b"." in data:
            for m in _JWT.finditer(data):
                start = m.start()
                floor = max(0, start - 2048)
                while start > floor and data[start - 1] in _B64URL:
                    start -= 1
                header = data.find(b"eyJ", start, m.start())
                if header != -1 and m.start() - header >= 8:
                    spans.append((header, m.end()))
        spans.extend(m.span("token") for m in _BEARER.finditer(data))

    @staticmethod
    def _find_emails(data: bytes, spans: list[_Span]) -> None:
        if b"@" not in data:
            return
        floor = 0
        for m in _EMAIL.finditer(data):
            at = m.start()
            # The local part: up to 64 bytes back (its RFC limit) to the first non-local byte.
            start = max(floor, at - 64)
            start += data[start:at].translate(_LOCAL_TABLE).rfind(b"x") + 1
            start = _escape_end(data, start)
            if start < at:
                spans.append((start, m.end()))
            floor = m.end()

    @staticmethod
    def _find_cards(data: bytes, spans: list[_Span]) -> None:
        classes = data.translate(_CARD_TABLE)
        if _LONG_FRACTION in classes:
            # Mask long decimal fractions (float64 reprs have up to 17 digits): each would
            # otherwise be tried as a card at every offset, and embeddings hold thousands.
            classes = classes.replace(_LONG_FRACTION, _MASKED_FRACTION)
        for runs in _CARD_RUNS:
            for m in runs.finditer(classes):
                _card_spans(data, m.start(), m.end(), spans)


def _json_safe(text: str) -> bool:
    """Whether ``text`` can sit inside a JSON string as is (no quote, backslash, control)."""
    return not any(c in '"\\' or unicodedata.category(c) in ("Cc", "Cs") for c in text)


def _card_spans(data: bytes, start: int, end: int, spans: list[_Span]) -> None:
    """Add the card numbers among the digit groups of ``data[start:end]``."""
    groups = [m.span() for m in _DIGITS.finditer(data, start, end)]
    first_start, first_end = groups[0]
    shifted = _escape_end(data, first_start)
    if shifted != first_start:  # the run begins inside an escape ("\u2014" + card)
        if shifted >= first_end:
            groups.pop(0)
        else:
            groups[0] = (shifted, first_end)
    elif _glued(data, first_start):  # hex ids and hashes hold long digit runs
        groups.pop(0)
    sizes = [e - s for s, e in groups]
    count = len(groups)
    i = 0
    while i < count:
        # A card starts with a group of 4 (then groups of 3-6) or is one run of 13-19.
        found = i if 13 <= sizes[i] <= 19 and _card_at(data, groups, i, i) else None
        if sizes[i] == 4:
            total = 4
            for j in range(i + 1, min(count, i + 6)):
                total += sizes[j]
                if not 3 <= sizes[j] <= 6 or total > 19:
                    break
                if total >= 13 and _card_at(data, groups, i, j):
                    found = j  # keep looking: 4-4-4-4-3 beats 4-4-4-4 when both pass
        if found is None:
            i += 1
        else:
            spans.append((groups[i][0], groups[found][1]))
            i = found + 1


def _card_at(data: bytes, groups: list[_Span], i: int, j: int) -> bool:
    """Whether groups ``i..j`` are a card number: Luhn-valid, and not glued to a word after."""
    start, end = groups[i][0], groups[j][1]
    if data[end : end + 1] in _ALNUM:
        return False
    return _is_card(data[start:end].translate(None, b" -"))


def _glued(data: bytes, pos: int) -> bool:
    """Whether ``data[pos]`` continues a word: a letter precedes it that no escape explains."""
    return (
        pos > 0
        and data[pos - 1 : pos] in _ALNUM
        and _escape_end(data, pos - 1) != pos  # the "n" of "\n4111..." is no letter
    )


def _is_card(digits: bytes) -> bool:
    """Whether ``digits`` (ASCII) start like a payment card and pass the Luhn check."""
    if digits[0] not in _CARD_INDUSTRIES:
        return False
    kept, doubled = digits[-1::-2], digits[-2::-2]  # from the right: every other is doubled
    total = sum(kept) - 48 * len(kept) + sum(doubled.translate(_LUHN_DOUBLE))
    return total % 10 == 0


def _escape_end(data: bytes, pos: int) -> int:
    """``pos``, or the index just past the JSON escape (``\\n``, ``\\u00e9``) it is inside."""
    for p in range(pos - 1, max(pos - 6, -1), -1):
        if data[p] != 0x5C:  # a backslash
            continue
        run = 1
        while p - run >= 0 and data[p - run] == 0x5C:
            run += 1
        if run % 2 == 0:  # the backslash is itself escaped: it starts nothing
            return pos
        if data[p + 1 : p + 2] == b"u" and _is_hex(data[p + 2 : p + 6]):
            return p + 6
        if p == pos - 1 and data[pos : pos + 1] in _ESCAPE_LETTERS:
            return pos + 1
        return pos
    return pos


def _is_hex(chunk: bytes) -> bool:
    return len(chunk) == 4 and all(c in _HEX for c in chunk)


def _splice(data: bytes, spans: list[_Span], replacement: bytes) -> bytes:
    """``data`` with each span (overlapping ones merged) replaced by ``replacement``."""
    spans.sort()
    pieces: list[bytes] = []
    pos = 0
    for start, end in spans:
        if end <= pos:
            continue
        if start >= pos:
            pieces.append(data[pos:start])
            pieces.append(replacement)
        pos = end
    pieces.append(data[pos:])
    return b"".join(pieces)
