"""The names that carry credentials on the wire: capture redacts them, replay never sends them.

One list, read by both ends: :class:`~capture.redact.Redactor` replaces the values of
:data:`CREDENTIAL_HEADERS` and :data:`CREDENTIAL_PARAMS` before a record leaves the sidecar,
and :mod:`shadow.replay.targets` drops :data:`CREDENTIAL_HEADERS` (and
:data:`ACCOUNT_HEADERS`) from every captured request, so an arm is called only with its own
credentials. Names are lower case; header names compare lower-cased, parameter names in any case.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ACCOUNT_HEADERS", "CREDENTIAL_HEADERS", "CREDENTIAL_PARAMS"]

CREDENTIAL_HEADERS: Final = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
    }
)
"""Headers whose values are credentials (``redaction.headers`` adds more to capture's list)."""

CREDENTIAL_PARAMS: Final = frozenset(
    {
        "api_key",
        "apikey",
        "key",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "auth",
        "password",
        "secret",
        "client_secret",
        "sig",
        "signature",
        "code",
        "x-amz-signature",
        "x-amz-security-token",
        "x-goog-signature",
    }
)
"""Query (and form) parameters whose values are credentials; names match in any case."""

ACCOUNT_HEADERS: Final = frozenset({"openai-organization", "openai-project"})
"""Headers that name production's account: not secret, so capture keeps them, but replay
never sends them, since each arm bills its own account."""
