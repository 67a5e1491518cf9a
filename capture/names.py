"""Secrets by name: the names that say "this is a credential", and the values written after them.

:func:`is_secret_name` reads a name in any case and separator style (``apiKey``,
``api_key``, ``api-key``, ``API Key``, ``x-api-key``) as words, and says whether it names a
credential: a password (``password``, ``passwd``, ``pwd``, ``passphrase``, ``pass``), a
secret, a token, an API, access, private or secret key, a client secret, a credential, a
session, a cookie, a signature, ``auth...`` (but not ``author``), or a card's CVV, a PIN, an
SSN. In header and query-parameter names (``param=True``) a bare ``key`` counts too
(``Ocp-Apim-Subscription-Key``, ``?key=``); in JSON keys and text it must be part of a
compound (``api_key``, ``accessKey``), since ``"key"`` names many ordinary things. A name that
ends in a word describing the secret rather than holding it (``token_count``,
``password_min_length``, ``session_timeout``, ``auth_url``, ``token_ids``) is not one.

:func:`find_named` finds such names followed by ``:``, ``=``, ``:=`` or ``=>`` in bytes, and
the value after them: a JSON string (quotes escaped any number of times, so JSON inside a
JSON string is read too), a number, or a bare word in text (``DB_PASSWORD=hunter2``,
``password: 'x'``, ``?token=...`` in a URL). A ``Basic``/``Bearer``/``Token`` scheme word
before the value is kept. In free text a bare value must look like a secret (six or more
characters, with a digit, a symbol or mixed case), so "password: required" is prose. The
``token`` of a logprobs entry (``{"token": "Hi", "logprob": -0.1}``) is a piece of text.
"""

from __future__ import annotations

import re
from functools import lru_cache

from capture.scan import Span, escape_end

__all__ = ["find_named", "is_secret_name"]

_SPLIT = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_WORDS = frozenset(
    {
        "secret", "secrets", "token", "pass", "pwd", "passwd", "password", "passwords",
        "passphrase", "passcode", "session", "cookie", "cookies", "credential", "credentials",
        "creds", "signature", "sig", "cvv", "cvc", "ssn", "pin", "otp", "jwt", "bearer",
    }
)  # fmt: skip
# Compounds found in the name with its separators removed (apikey in x-api-key, XApiKey).
_COMPOUNDS = (
    "password", "passwd", "passphrase", "credential", "apikey", "accesskey", "privatekey",
    "secretkey", "signingkey", "encryptionkey", "masterkey", "accountkey", "subscriptionkey",
    "clientsecret", "appsecret", "accesstoken", "refreshtoken", "authtoken", "idtoken",
    "sessiontoken", "securitytoken", "bearertoken", "sessionid", "sessionkey",
    "authorization", "authkey", "connectionstring",
)  # fmt: skip
# A last word that describes the secret instead of holding it.
_QUALIFIERS = frozenset(
    {
        "count", "counts", "type", "types", "kind", "length", "len", "size", "limit", "limits",
        "min", "max", "expiry", "expires", "expiration", "ttl", "timeout", "url", "uri",
        "endpoint", "path", "file", "enabled", "required", "policy", "rate", "version",
        "format", "method", "name", "usage", "id", "ids", "index", "hint", "strength",
    }
)  # fmt: skip
_WORD_CHARS = b"abcdefghijklmnopqrstuvwxyz0123456789_.-"
_WORD_BYTES = frozenset(_WORD_CHARS)
_NAME_BYTES = _WORD_BYTES | {0x20}
_ANCHORS = (
    b"pass", b"pwd", b"secret", b"token", b"auth", b"key", b"session", b"cookie", b"cred",
    b"sig", b"connection", b"cvv", b"cvc", b"ssn", b"jwt", b"otp", b"pin",
)  # fmt: skip
# An anchor word, then (checked in C, so prose costs no Python) an operator after the name.
# ("tokens", as in max_tokens, is a count: never a credential's name.)
_ANCHOR = re.compile(
    b"(?:"
    + b"|".join(b"token(?!s)" if anchor == b"token" else anchor for anchor in _ANCHORS)
    + rb")(?=[a-z0-9_.-]{0,64}(?:\\*[\"'])?[ \t]*[:=])"
)
_MAX_NAME = 64

# After the name: a closing quote (maybe escaped), the operator, an optional scheme word,
# then a double- or single-quoted value, the start of a container, or a bare value.
_ASSIGN = re.compile(
    rb"(?P<close>\\*[\"'])?[ \t]*(?:=>|:=|[:=])[ \t]*"
    rb"(?:(?:[Bb]asic|[Bb]earer|[Tt]oken|[Bb]ot|Digest)[ \t]+)?"
    rb"(?:(?P<dq>\\*\")(?P<dv>(?:[^\"\\\x00\n]|\\[^\"\x00\n])*)"
    rb"|(?P<sq>\\*')(?P<sv>[^'\\\x00\n]*)"
    rb"|(?P<open>[\[{])"
    rb"|(?P<bare>[^\s\"'\\,;&#<>(){}\[\]\x00]+))"
)
_LITERALS = frozenset({b"true", b"false", b"null", b"none", b"undefined", b"nil"})
_LOGPROB = re.compile(rb'[^}]{0,400}?\\*"logprob\\*"')


@lru_cache(maxsize=4096)
def is_secret_name(name: str, param: bool = False) -> bool:
    """Whether ``name`` (a JSON key, header, parameter or variable name) names a credential."""
    words = [w.lower() for w in _SPLIT.findall(name)]
    if not words:
        return False
    last = words[-1]
    if len(words) > 1 and last in _QUALIFIERS and (last not in ("id", "ids") or "token" in words):
        return False
    for word in words:
        if word in _WORDS or (param and word == "key"):
            return True
        if (word.startswith("auth") and not word.startswith("author")) or word.startswith(
            "authoriz"
        ):
            return True
    joined = "".join(words)
    return any(compound in joined for compound in _COMPOUNDS)


def find_named(data: bytes, spans: list[Span]) -> bool:
    """Add the span of each value written after a secret name; True if JSON must be parsed.

    A container (``"credentials": {...}``) or a number (``"pin": 1234``) under a secret JSON
    key is left to the caller, which can parse the JSON and replace it there.
    """
    lowered = data.lower()
    seen: set[int] = set()
    containers = False
    for m in _ANCHOR.finditer(lowered):
        found = _named_at(data, lowered, m.start(), m.end() - m.start(), seen, spans)
        containers = containers or found
    return containers


def _named_at(
    data: bytes, lowered: bytes, pos: int, size: int, seen: set[int], spans: list[Span]
) -> bool:
    after = pos + size
    tail = lowered[after : after + _MAX_NAME]
    end = after + len(tail) - len(tail.lstrip(_WORD_CHARS))
    m = _ASSIGN.match(data, end)  # most hits are words in prose: no operator follows
    if m is None or end in seen:
        return False
    seen.add(end)
    floor = max(0, pos - _MAX_NAME)
    start = floor + len(lowered[floor:pos].rstrip(_WORD_CHARS))
    if start > floor and lowered[start - 1] == 0x20:  # a spaced name must be quoted: "API Key"
        spaced = start
        while spaced > floor and lowered[spaced - 1] in _NAME_BYTES:
            spaced -= 1
        if spaced > 0 and data[spaced - 1] in b"\"'" and data[spaced] != 0x20:
            start = spaced
    if start > 0 and data[start - 1] == 0x5C:  # "\npassword": the n belongs to the escape
        start = escape_end(data, start + 1)
        if start > pos:
            return False
    name = data[start:end].decode("ascii")
    before = data[start - 1 : start]
    in_query = before in (b"?", b"&")
    quoted_name = m.group("close") is not None and before in (b'"', b"'")
    if not is_secret_name(name, in_query):
        return False
    if m.group("open") is not None:
        return quoted_name
    for group in ("dv", "sv", "bare"):
        value = m.group(group)
        if value is None:
            continue
        if not value or value.lower() in _LITERALS:
            return False
        if group == "bare" and quoted_name and m.group("close") == b'"':
            return True  # a JSON number: replaced in the parsed JSON, so it stays JSON
        if group == "bare" and not (quoted_name or in_query) and not _looks_secret(value):
            return False
        if name.lower() == "token" and quoted_name and _LOGPROB.match(data, m.end()):
            return False  # a logprobs entry's text token
        spans.append(m.span(group))
    return False


def _looks_secret(value: bytes) -> bool:
    """A bare value in free text: six or more characters, with a digit, a symbol or mixed case."""
    if len(value) < 6:
        return False
    if not value.isalpha():
        return True
    return len(value) >= 8 and not value.islower() and not value.isupper() and not value.istitle()
