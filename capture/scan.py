"""Byte-scanning primitives shared by the scrubbers: word starts, JSON escapes, splicing.

Every scrubber (:mod:`capture.secrets`, :mod:`capture.pii`, :mod:`capture.names`) reports
``(start, end)`` spans of ``bytes``; :func:`splice` replaces them. The helpers here keep a
span from starting inside a JSON escape (``\\n``, ``\\u2014``) or ending between a backslash
and the character it escapes, which is what keeps a scrubbed JSON body valid JSON.
"""

from __future__ import annotations

__all__ = [
    "ALNUM",
    "ASCII_ALNUM",
    "Span",
    "escape_end",
    "glued",
    "splice",
    "word_after",
    "word_start",
]

Span = tuple[int, int]

ASCII_ALNUM = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
ALNUM = frozenset(ASCII_ALNUM[i : i + 1] for i in range(len(ASCII_ALNUM)))  # 1-byte slices
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ESCAPE_LETTERS = frozenset(bytes([c]) for c in b'"\\/bfnrt')  # 1-byte slices


def word_start(prefix: bytes) -> bytes:
    """A lookbehind, placed right after ``prefix``: the prefix starts a word.

    A word also starts right after a JSON escape such as ``\\n`` or ``\\u2014``, whose
    letters and digits are not part of the secret that follows it.
    """
    return (
        rb"(?:(?<![A-Za-z0-9_]" + prefix + rb")|(?<=\\[nrtbf]" + prefix + rb")"
        rb"|(?<=\\u[0-9A-Fa-f]{4}" + prefix + rb"))"
    )


def word_after(prefix: bytes) -> bytes:
    """A lookbehind, placed right after ``prefix``: the prefix is there and starts a word."""
    return rb"(?<=" + prefix + rb")" + word_start(prefix)


def glued(data: bytes, pos: int, word: bytes = ASCII_ALNUM) -> bool:
    """Whether ``data[pos]`` continues a word: a ``word`` byte precedes it, no escape's letter."""
    return (
        pos > 0
        and data[pos - 1] in word
        and escape_end(data, pos - 1) != pos  # the "n" of "\n4111..." is no letter
    )


def escape_end(data: bytes, pos: int) -> int:
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


def splice(data: bytes, spans: list[Span], replacement: bytes) -> bytes:
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
