"""From the library's words to the command line's: a setting's error names the flag that set it.

Library code raises :class:`~shadow.errors.UsageError` about its own parameters (``rate has
value 0; it must be > 0``, with ``setting="rate"``); a person typed ``--rate 0``, so the CLI
says ``--rate has value 0; it must be > 0``. Flags are named the same in every command, so one
table serves them all.
"""

from __future__ import annotations

from shadow.errors import ShadowError, UsageError

__all__ = ["FLAGS", "user_message"]

FLAGS = {
    "arrival": "--arrival",
    "burstiness": "--burstiness",
    "by": "--by",
    "slice": "--slice",
    "port": "--port",
    "ramp": "--ramp",
    "rate": "--rate",
    "speed": "--speed",
    "start_at": "--start-at",
}
"""Library setting → the flag that sets it (the settings library code names in its errors)."""


def user_message(exc: ShadowError) -> str:
    """The error's one line, with the setting it is about named as the flag a user types."""
    text = str(exc)
    setting = exc.setting if isinstance(exc, UsageError) else None
    flag = FLAGS.get(setting or "")
    if flag is None or setting is None:
        return text
    if text.startswith(setting):
        return flag + text[len(setting) :]
    return f"{flag}: {text}"
