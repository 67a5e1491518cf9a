"""The names that carry credentials on the wire: capture redacts them, replay never sends them.

One list, read by both ends: :class:`~capture.redact.Redactor` replaces the values of
:data:`CREDENTIAL_HEADERS` and :data:`CREDENTIAL_PARAMS` before a record leaves the sidecar.
Replay (:mod:`shadow.replay.targets`) sends no captured header but the few it allows, and
never one of these names (nor :data:`ACCOUNT_HEADERS`, nor a query parameter of
:data:`CREDENTIAL_PARAMS` or whose name :func:`looks_like_credential`), so an arm is called
only with its own credentials, in the :data:`AuthStyle` of the API it serves
(:func:`auth_header`). Names are lower case; header names compare lower-cased, parameter names
in any case.
"""

from __future__ import annotations

import re
from typing import Final, Literal, get_args

__all__ = [
    "ACCOUNT_HEADERS",
    "AUTH_STYLES",
    "CREDENTIAL_HEADERS",
    "CREDENTIAL_PARAMS",
    "CREDENTIAL_WORDS",
    "AuthStyle",
    "auth_header",
    "looks_like_credential",
    "pass_header_problem",
]

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


CREDENTIAL_WORDS: Final = (
    "key", "token", "secret", "auth", "passw", "pwd", "signature", "session", "cookie",
    "credential",
)  # fmt: skip
"""A header or parameter whose name contains one of these (any case, any separator) is taken
for a credential: ``X-Auth-Token``, ``Ocp-Apim-Subscription-Key``, ``x-vendor-session``."""

_SEPARATORS = re.compile(r"[^a-z0-9]")

AuthStyle = Literal["bearer", "x-api-key", "x-goog-api-key", "api-key"]
"""How an API takes its key: ``Authorization: Bearer`` (OpenAI and compatible servers),
``x-api-key`` (Anthropic), ``x-goog-api-key`` (Gemini), ``api-key`` (Azure OpenAI)."""

AUTH_STYLES: Final[tuple[AuthStyle, ...]] = get_args(AuthStyle)


def looks_like_credential(name: str) -> bool:
    """Whether a header or parameter name says it carries a credential (see
    :data:`CREDENTIAL_WORDS`); a name on :data:`CREDENTIAL_HEADERS` or
    :data:`CREDENTIAL_PARAMS` always does."""
    lowered = name.lower()
    if lowered in CREDENTIAL_HEADERS or lowered in CREDENTIAL_PARAMS:
        return True
    compact = _SEPARATORS.sub("", lowered)
    return any(word in compact for word in CREDENTIAL_WORDS)


def auth_header(style: AuthStyle, secret: str) -> tuple[str, str]:
    """The header (lower-case name, value) that carries ``secret`` in ``style``."""
    if style == "bearer":
        return "authorization", f"Bearer {secret}"
    return style, secret


_NEVER_PASSED: Final = frozenset(
    {
        "host", "content-length", "content-encoding", "transfer-encoding", "connection",
        "keep-alive", "upgrade", "te", "trailer", "proxy-connection", "expect",
        "accept-encoding", "forwarded", "via",
    }
) | ACCOUNT_HEADERS  # fmt: skip
"""Framing and routing the client set for production (an arm's request has its own) and
production's account: never passed through, whatever ``replay.pass_headers`` says."""

_TOKEN = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")


def pass_header_problem(name: str) -> str | None:
    """Why a captured header may not be passed through to the arms, or None when it may."""
    lowered = name.lower()
    if not _TOKEN.fullmatch(lowered):
        return "name a header, e.g. 'x-request-source'"
    if looks_like_credential(lowered):
        return (
            "it looks like a credential (key, token, secret, auth, password, signature, "
            "session, cookie): arms send their own key from api_key_env"
        )
    if lowered in _NEVER_PASSED or lowered.startswith("x-forwarded-"):
        return "replay never passes framing, forwarding or account headers"
    return None
