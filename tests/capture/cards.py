"""Card-number helpers for the redaction tests: the Luhn check and Luhn-valid numbers."""

from __future__ import annotations

import random
import string


def luhn_ok(number: str) -> bool:
    """Whether ``number`` (digits only) passes the Luhn check that card numbers carry."""
    total = 0
    for i, char in enumerate(reversed(number)):
        digit = int(char)
        if i % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    """A Luhn-valid number of ``length`` digits that starts with ``prefix``."""
    payload = prefix + "".join(rng.choices(string.digits, k=length - len(prefix) - 1))
    return next(payload + d for d in string.digits if luhn_ok(payload + d))
