"""The checks ``shadow.toml`` values go through (:mod:`shadow.config` builds on them).

Each raises :class:`Invalid` with the key, the value and the fix; the loader adds the section
path and the file to make the one-line error the user sees.
"""

from __future__ import annotations

import re

__all__ = ["Invalid", "fraction", "positive", "regexes", "require"]


class Invalid(Exception):
    """A field's value is unusable; the loader adds the section path and the file."""

    def __init__(self, key: str, value: object, fix: str) -> None:
        super().__init__(key, value, fix)
        self.key, self.value, self.fix = key, value, fix


def require(ok: bool, key: str, value: object, fix: str) -> None:
    """Raise :class:`Invalid` unless ``ok``."""
    if not ok:
        raise Invalid(key, value, fix)


def positive(obj: object, *names: str) -> None:
    """Each named attribute of ``obj`` is > 0."""
    for name in names:
        value = getattr(obj, name)
        require(value > 0, name, value, "it must be > 0")


def fraction(obj: object, *names: str) -> None:
    """Each named attribute of ``obj`` is between 0 and 1."""
    for name in names:
        value = getattr(obj, name)
        require(0.0 <= value <= 1.0, name, value, "it must be between 0 and 1")


def regexes(key: str, patterns: tuple[str, ...]) -> None:
    """Each of ``patterns`` compiles as a regular expression."""
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise Invalid(key, pattern, f"it is not a valid regular expression ({exc})") from None
