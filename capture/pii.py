"""Personal data: e-mail addresses, payment cards, phone numbers, IBANs and US SSNs.

Each finder adds ``(start, end)`` spans of ``bytes``; numbers are checked the way their
issuers check them, which is what keeps ordinary numbers out:

- **Card numbers** are 13-19 digits that start with 2-6 (the card industries) and pass the
  Luhn check, written as one run, as a group of four and groups of three to six (4-4-4-4,
  4-6-5, 4-4-4-4-3), or in any grouping of digit groups split by one to three spaces or
  dashes when the whole run is the number. An ordinary 13-19 digit id that starts with 2-6
  passes Luhn one time in ten, so a tenth of those are redacted; timestamps (``17...``),
  decimal fractions and digits glued to letters (hex ids, hashes) never are.
- **Phone numbers**: international (``+`` and a country code, 8-15 digits, spaces, dots,
  dashes, slashes or parentheses between groups, as E.164 allows), North American
  ``(415) 555-0123`` / ``415-555-0123`` / ``415.555.0123`` (area code and exchange 2-9), and
  national numbers with a trunk ``0`` in two or more groups, 10-11 digits (``020 7946 0958``,
  ``01 23 45 67 89``, ``030/1234567``). A bare run of digits is not taken for a phone.
- **IBANs**: a country's code and length, compact or in groups of four, mod-97 checked.
- **US SSNs**: ``123-45-6789`` or ``123 45 6789``; area 000, 666 and 900-999, group 00 and
  serial 0000 are never issued, so those are kept.
"""

from __future__ import annotations

import re

from capture.scan import ALNUM, Span, escape_end, glued

__all__ = ["find_cards", "find_emails", "find_personal"]

# --- e-mail addresses -----------------------------------------------------------------------
# Anchored on "@"; the local part is found by walking back.
_EMAIL = re.compile(
    rb"@(?<=[A-Za-z0-9._%+-]@)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}(?![A-Za-z0-9-])"
)
_LOCAL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-"
_LOCAL_TABLE = bytes(ord("l") if b in _LOCAL else ord("x") for b in range(256))


def find_emails(data: bytes, spans: list[Span]) -> None:
    """Add the span of every e-mail address."""
    if b"@" not in data:
        return
    floor = 0
    for m in _EMAIL.finditer(data):
        at = m.start()
        # The local part: up to 64 bytes back (its RFC limit) to the first non-local byte.
        start = max(floor, at - 64)
        start += data[start:at].translate(_LOCAL_TABLE).rfind(b"x") + 1
        start = escape_end(data, start)
        if start < at:
            spans.append((start, m.end()))
        floor = m.end()


# --- card numbers ---------------------------------------------------------------------------
# The input is first translated so digits read "0", spaces and dashes "s", dots ".",
# backslashes "b", "u" itself and everything else "x". A card is then a first group of four
# digits and a separator ("0000s", the grouped forms) or thirteen digits in a row, at the
# start of a digit run (not after a digit or a decimal point, unless the digits before are a
# JSON "\\uXXXX" escape), followed by digits and single separators; the lookaheads keep runs
# of 13 or more digits. Literal prefixes of digits keep the scan fast on prose and the
# attempts few on numeric JSON (token ids); long decimal fractions are masked first. The group
# layout and the Luhn check are done in Python, on the runs found.
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
# Any grouping: two or more digit groups split by one to three separators, as a whole.
_CARD_GROUPED = re.compile(rb"00(?<![0.]00)(?=(?:s{0,3}0){11})0*(?:s{1,3}0{1,8}){1,18}")
_LONG_FRACTION = b"." + b"0" * 13
_MASKED_FRACTION = b"." + b"d" * 13
_DIGITS = re.compile(rb"[0-9]+")
_CARD_INDUSTRIES = b"23456"
# An ASCII digit d -> the value Luhn adds for it when doubled (2d, minus 9 past 9).
_LUHN_DOUBLE = bytes((2 * (b - 48) - 9 * (b > 52)) if 48 <= b <= 57 else 0 for b in range(256))


def find_cards(data: bytes, spans: list[Span]) -> None:
    """Add the span of every payment card number."""
    classes = data.translate(_CARD_TABLE)
    if _LONG_FRACTION in classes:
        # Mask long decimal fractions (float64 reprs have up to 17 digits): each would
        # otherwise be tried as a card at every offset, and embeddings hold thousands.
        classes = classes.replace(_LONG_FRACTION, _MASKED_FRACTION)
    for runs in _CARD_RUNS:
        for m in runs.finditer(classes):
            _card_spans(data, m.start(), m.end(), spans)
    for m in _CARD_GROUPED.finditer(classes):
        start, end = m.span()
        count = end - start - classes.count(b"s", start, end)
        if 13 <= count <= 19 and not glued(data, start) and _is_card_at(data, start, end):
            spans.append((start, end))


def _is_card_at(data: bytes, start: int, end: int) -> bool:
    if data[end : end + 1] in ALNUM or (
        data[end : end + 1] == b"." and data[end + 1 : end + 2].isdigit()
    ):
        return False
    return _is_card(data[start:end].translate(None, b" -"))


def _card_spans(data: bytes, start: int, end: int, spans: list[Span]) -> None:
    """Add the card numbers among the digit groups of ``data[start:end]``."""
    groups = [m.span() for m in _DIGITS.finditer(data, start, end)]
    first_start, first_end = groups[0]
    shifted = escape_end(data, first_start)
    if shifted != first_start:  # the run begins inside an escape ("\u2014" + card)
        if shifted >= first_end:
            groups.pop(0)
        else:
            groups[0] = (shifted, first_end)
    elif glued(data, first_start):  # hex ids and hashes hold long digit runs
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


def _card_at(data: bytes, groups: list[Span], i: int, j: int) -> bool:
    """Whether groups ``i..j`` are a card number: Luhn-valid, and not glued to a word after."""
    start, end = groups[i][0], groups[j][1]
    if data[end : end + 1] in ALNUM:
        return False
    return _is_card(data[start:end].translate(None, b" -"))


def _is_card(digits: bytes) -> bool:
    """Whether ``digits`` (ASCII) start like a payment card and pass the Luhn check."""
    if digits[0] not in _CARD_INDUSTRIES:
        return False
    kept, doubled = digits[-1::-2], digits[-2::-2]  # from the right: every other is doubled
    total = sum(kept) - 48 * len(kept) + sum(doubled.translate(_LUHN_DOUBLE))
    return total % 10 == 0


# --- phones, SSNs, IBANs ----------------------------------------------------------------------
# Translated so digits read "0", spaces and dashes "s", and "+ . / ( )" themselves.
_PHONE_CLASSES = {
    **dict.fromkeys(b"0123456789", b"0"),
    **dict.fromkeys(b" -", b"s"),
    **{c: bytes([c]) for c in b"+./()"},
}
_PHONE_TABLE = b"".join(_PHONE_CLASSES.get(b, b"x") for b in range(256))
_INTERNATIONAL = re.compile(rb"\+0(?:[0()]|[s./](?=[0(])){6,24}")
_NORTH_AMERICAN = (
    re.compile(rb"\(000\)s?000[s.]0000"),
    re.compile(rb"000[s.](?<![0.]000[s.])000[s.]0000"),
)
_NATIONAL = re.compile(rb"00(?<![0.]00)(?=(?:[s./]?0){8})0{0,3}(?:[s./]0{2,8}){1,4}")
_SSN = re.compile(rb"000s(?<![0.]000s)00s0000")
_NUMBER_BYTES = frozenset(b"0123456789")

_IBAN_CLASSES = {**dict.fromkeys(b"0123456789", b"0"), **dict.fromkeys(range(65, 91), b"A")}
_IBAN_TABLE = b"".join(_IBAN_CLASSES.get(b, b" " if b == 0x20 else b"x") for b in range(256))
_IBAN = re.compile(rb"AA00(?: ?[A0]{4}){2,7}(?: ?[A0]{1,4})?")
# Country -> IBAN length (ISO 13616 registry), for the countries most traffic comes from.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AT": 20, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "CH": 21,
    "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FO": 18, "FR": 27,
    "GB": 22, "GI": 23, "GL": 18, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "MC": 27, "ME": 22, "MK": 19, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28,
    "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27,
    "TN": 24, "TR": 26, "UA": 29, "VG": 24,
}  # fmt: skip


def find_personal(data: bytes, spans: list[Span]) -> None:
    """Add the span of every phone number, IBAN and US social security number."""
    classes = data.translate(_PHONE_TABLE)
    if b"+0" in classes:
        for m in _INTERNATIONAL.finditer(classes):
            _phone(data, m.start(), m.end(), spans, 8, 15, international=True)
    if b"000" in classes:
        for pattern in _NORTH_AMERICAN:
            for m in pattern.finditer(classes):
                _phone(data, m.start(), m.end(), spans, 10, 10, north_american=True)
        for m in _SSN.finditer(classes):
            _ssn(data, m.start(), m.end(), spans)
    if b"00" in classes:
        for m in _NATIONAL.finditer(classes):
            if data[m.start()] == 0x30 and data[m.start() + 1] != 0x30:  # a trunk "0"
                _phone(data, m.start(), m.end(), spans, 10, 11)
    iban_classes = data.translate(_IBAN_TABLE)
    if b"AA00" in iban_classes:
        for m in _IBAN.finditer(iban_classes):
            _iban(data, m.start(), m.end(), spans)


def _bounded(data: bytes, start: int, end: int) -> bool:
    """Whether ``data[start:end]`` is a whole token: no word or number runs on either side."""
    if glued(data, start) or (start > 0 and data[start - 1 : start] in (b"+", b"_")):
        return False
    before = data[max(0, start - 2) : start]
    if len(before) == 2 and before[1] in b"-./" and before[0] in _NUMBER_BYTES:
        return False  # part of a longer dotted or dashed number (a date, a version, an id)
    after = data[end : end + 2]
    if after[:1] in ALNUM or after[:1] == b"_":
        return False
    return not (len(after) == 2 and after[0] in b"-./" and after[1] in _NUMBER_BYTES)


def _phone(
    data: bytes,
    start: int,
    end: int,
    spans: list[Span],
    least: int,
    most: int,
    *,
    international: bool = False,
    north_american: bool = False,
) -> None:
    while end > start and data[end - 1] in b" -./(":
        end -= 1
    text = data[start:end]
    digits = sum(c in _NUMBER_BYTES for c in text)
    if not least <= digits <= most or not _bounded(data, start, end):
        return
    if international and text[1:2] == b"0":  # country codes never start with 0
        return
    if text.count(b"(") != text.count(b")"):
        return
    if north_american:  # the area code and the exchange start with 2-9
        numbers = bytes(c for c in text if c in _NUMBER_BYTES)
        if numbers[0] not in b"23456789" or numbers[3] not in b"23456789":
            return
    spans.append((start, end))


def _ssn(data: bytes, start: int, end: int, spans: list[Span]) -> None:
    text = data[start:end]
    if text[3] != text[6] or not _bounded(data, start, end):  # one separator, used twice
        return
    area, group, serial = int(text[0:3]), int(text[4:6]), int(text[7:11])
    if area == 0 or area == 666 or area >= 900 or group == 0 or serial == 0:
        return
    spans.append((start, end))


def _iban(data: bytes, start: int, end: int, spans: list[Span]) -> None:
    if glued(data, start):
        return
    compact = data[start:end].replace(b" ", b"").decode("ascii")
    length = _IBAN_LENGTHS.get(compact[:2])
    if length is None or len(compact) < length:
        return
    if len(compact) > length:  # the regex ran on into what follows: cut back to the length
        end = start
        kept = 0
        while kept < length:
            kept += data[end] != 0x20
            end += 1
        compact = compact[:length]
    if data[end : end + 1] in ALNUM:
        return
    rotated = compact[4:] + compact[:4]
    number = int("".join(str(int(c, 36)) for c in rotated))
    if number % 97 == 1:
        spans.append((start, end))
