"""Credential shapes: provider keys, tokens, webhook URLs, private keys, passwords in URLs.

:func:`find_secrets` adds the span of every credential it recognises by its shape alone (no
name next to it needed; :mod:`capture.names` finds values by their names). The shapes follow
the families that secret scanners (gitleaks, trufflehog, detect-secrets) look for, written
here from each provider's documented token format:

- AI providers: OpenAI and Anthropic ``sk-...``, Hugging Face ``hf_`` / ``api_org_``, Groq
  ``gsk_``, Replicate ``r8_``, xAI ``xai-``, Perplexity ``pplx-``;
- cloud: AWS access key ids (``AKIA``/``ASIA``) and ``aws_secret_access_key = ...``, Google
  API keys (``AIza``), OAuth client secrets (``GOCSPX-``) and access tokens (``ya29.``),
  Azure AD client secrets (``...Q~...``), DigitalOcean (``dop_v1_``), Databricks (``dapi``),
  New Relic (``NRAK-``), age keys;
- source hosting and registries: GitHub (``ghp_``, ``github_pat_``...), GitLab (``glpat-`` and
  the other ``gl..-`` tokens), Bitbucket and Atlassian (``ATBB``, ``ATATT``), npm (``npm_``),
  PyPI (``pypi-AgE...``), RubyGems, Docker Hub (``dckr_pat_``), Shopify, Linear;
- chat and webhooks: Slack tokens (``xox.-``, ``xapp-``, ``xoxe``) and webhook URLs, Discord,
  Microsoft Teams / Office 365, Zapier and Mattermost webhook URLs, Telegram bot tokens;
- payment and messaging: Stripe (``sk_live_``, ``rk_live_``, ``whsec_``), Twilio (``SK`` + 32
  hex), SendGrid (``SG.``), Mailgun (``key-``), Mailchimp (``...-us12``);
- JWTs, PEM private key blocks, ``Bearer`` and ``Basic`` credentials in text, and any URL
  with ``user:password@`` (connection strings such as ``postgres://app:pw@db/x``).

Each pattern starts with a literal (Python's regex engine scans fast only for one), and is
tried only when that literal is in the input at all (``in`` on bytes is a fast search).
Secrets are words: a key glued onto other letters (``xsk-...``) is not one.
"""

from __future__ import annotations

import binascii
import re

from capture.scan import Span, escape_end, glued, word_after, word_start

__all__ = ["find_secrets"]

_WORD = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"

# Key shapes anchored on "-"; group name -> bytes of the secret before the anchor. The first
# lookbehind turns away most dashes (negative numbers, dates, kebab-case) in one step.
_DASH = re.compile(
    rb"-(?:(?<=[abkprst]-)(?:"
    rb"(?P<sk>" + word_after(rb"sk-") + rb"[A-Za-z0-9_-]{20,})"  # OpenAI, Anthropic (sk-ant-)
    rb"|(?P<xox>" + word_after(rb"xox[abprs]-") + rb"[A-Za-z0-9-]{10,})"  # Slack
    rb"|(?P<glpat>" + word_after(rb"glpat-") + rb"[A-Za-z0-9_-]{20,})"  # GitLab
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
    rb"(?P<stripe>" + word_after(rb"[sr]k_") + rb"(?:live|test)_[A-Za-z0-9]{16,})"
    rb"|(?P<gh>" + word_after(rb"gh[pousr]_") + rb"[A-Za-z0-9]{30,})"
    rb"|(?P<ghpat>" + word_after(rb"github_") + rb"pat_[A-Za-z0-9_]{22,})"
    rb"|(?P<hf>" + word_after(rb"hf_") + rb"[A-Za-z0-9]{30,})"
    # Quotes around the name and the value may be escaped, once or (JSON in JSON) more.
    rb"|(?<=[Aa][Ww][Ss]_)(?i:secret_access_key)(?:\\*[\"'])?(?:\s|\\[nrt])*[:=]"
    rb"(?:\s|\\[nrt])*(?:\\*[\"'])?(?P<aws>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
    rb")"
)
_UNDER_BACK = {"stripe": 2, "gh": 3, "ghpat": 6, "hf": 2}

# AWS access key ids (AKIA long-lived, ASIA temporary) and Google API keys.
_UPPER_A = re.compile(
    rb"A(?=KIA|SIA|Iza)"  # first: most capital A's fail here, before the lookbehinds
    + word_start(rb"A")
    + rb"(?:(?:KIA|SIA)[0-9A-Z]{16}(?![0-9A-Za-z])|Iza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-]))"
)

# JWTs: anchored on the dot before the payload (always "eyJ", base64 of '{"'); the header
# before it is found by walking back.
_JWT = re.compile(rb"\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_B64URL = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")

# "Bearer" or "bearer" and the token after it (RFC 6750's b64token): the token must hold a
# digit or be 20+ characters long, which tells it from prose. Anchored on "arer": a pattern
# that starts with "[Bb]" or "(?i)" scans ten times slower.
_BEARER = re.compile(
    rb"arer(?<=[Bb]earer)"
    + word_start(rb"[Bb]earer")
    + rb"[ \t]+(?P<token>(?=[A-Za-z._~+/-]*[0-9]|[A-Za-z0-9._~+/-]{20})[A-Za-z0-9._~+/-]{8,}=*)"
)

# "Basic" and base64 of "user:password" (RFC 7617); the payload must decode to a colon pair,
# which tells it from "basic English".
_BASIC = re.compile(
    rb"asic(?<=[Bb]asic)"
    + word_start(rb"[Bb]asic")
    + rb"[ \t]+(?P<token>[A-Za-z0-9+/]{4,}={0,2})(?![A-Za-z0-9+/=])"
)

# A URL's userinfo with a password: scheme://user:password@host (connection strings too).
_USERINFO = re.compile(
    rb"://(?P<info>[^\s/?#@:\"'\\<>]{0,128}:[^\s/?#@\"'\\<>]{1,256})@(?=[A-Za-z0-9\[])"
)

# Webhook URLs: the literal, then the URL's path; the span reaches back to its https://.
_URL_TAIL = rb"[A-Za-z0-9_~%+./-]"
_WEBHOOKS = (
    (b"hooks.slack.com/", rb"(?:services|workflows|triggers)/" + _URL_TAIL + b"{16,}"),
    (b"discord", rb"(?:app)?\.com/api/webhooks/[0-9]{5,}/[A-Za-z0-9_-]{16,}"),
    (b".webhook.office.com/", rb"webhook(?:b2)?/" + _URL_TAIL + b"{16,}"),
    (b"outlook.office.com/", rb"webhook(?:b2)?/" + _URL_TAIL + b"{16,}"),
    (b"hooks.zapier.com/", rb"hooks/catch/[0-9]+/[A-Za-z0-9]+/?"),
    (b"/hooks/", rb"[a-z0-9]{26}(?![A-Za-z0-9])"),  # Mattermost incoming webhooks
)
_WEBHOOK_PATTERNS = tuple((literal, re.compile(rest)) for literal, rest in _WEBHOOKS)
_URL_HOST = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-")

# Tokens that start with a literal prefix: (prefix, the rest). The prefix must start a word;
# the rest must not run on into more token characters.
_TAIL20 = rb"[A-Za-z0-9_-]{20,}"
_GITLAB = (b"dt", b"rt", b"ptt", b"cbt", b"soat", b"imt", b"ft", b"oas", b"agent")
_PREFIXES = (
    *((b"gl" + kind + b"-", _TAIL20) for kind in _GITLAB),  # GitLab's other tokens
    (b"GOCSPX-", rb"[A-Za-z0-9_-]{24,}"),  # Google OAuth client secret
    (b"ya29.", _TAIL20),  # Google OAuth access token
    (b"api_org_", rb"[A-Za-z]{30,}"),  # Hugging Face organisation token
    (b"gsk_", rb"[A-Za-z0-9]{40,}"),  # Groq
    (b"r8_", rb"[A-Za-z0-9]{30,}"),  # Replicate
    (b"xai-", rb"[A-Za-z0-9]{60,}"),  # xAI
    (b"pplx-", rb"[A-Za-z0-9]{40,}"),  # Perplexity
    (b"xapp-", rb"[0-9]-[A-Z0-9]{8,}-[0-9]{8,}-[A-Za-z0-9]{32,}"),  # Slack app token
    (b"xoxe-", rb"[0-9]-[A-Za-z0-9]{40,}"),  # Slack refresh tokens
    (b"xoxe.xoxb-", rb"[0-9]-[A-Za-z0-9]{40,}"),
    (b"xoxe.xoxp-", rb"[0-9]-[A-Za-z0-9]{40,}"),
    (b"whsec_", rb"[A-Za-z0-9+/=]{24,}"),  # Stripe webhook secret
    (b"SG.", rb"[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{32,64}"),  # SendGrid
    (b"key-", rb"[0-9a-f]{32}(?![0-9A-Za-z])"),  # Mailgun
    (b"npm_", rb"[A-Za-z0-9]{36}(?![A-Za-z0-9])"),  # npm
    (b"pypi-", rb"AgE[A-Za-z0-9_-]{50,}"),  # PyPI (a macaroon: "pypi.org" in base64)
    (b"rubygems_", rb"[0-9a-f]{48}"),  # RubyGems
    (b"dckr_pat_", rb"[A-Za-z0-9_-]{24,}"),  # Docker Hub
    (b"NRAK-", rb"[A-Z0-9]{27}"),  # New Relic user key
    *((b"shp" + kind + b"_", rb"[a-fA-F0-9]{32}") for kind in (b"at", b"ss", b"ca", b"pa")),
    (b"lin_api_", rb"[A-Za-z0-9]{40}"),  # Linear
    (b"AGE-SECRET-KEY-", rb"1[0-9A-Z]{58}"),  # age
    (b"sntrys_", rb"[A-Za-z0-9_=+/-]{40,}"),  # Sentry auth token
    # No separator: found with a plain search.
    (b"SK", rb"[0-9a-f]{32}(?![0-9A-Za-z])"),  # Twilio API key
    (b"ATBB", rb"[A-Za-z0-9_=.-]{28,}"),  # Bitbucket app password
    (b"ATATT", rb"[A-Za-z0-9_=-]{40,}"),  # Atlassian API token
    (b"dapi", rb"[a-f0-9]{32}(?:-[0-9]+)?(?![0-9A-Za-z])"),  # Databricks
)
_SEPARATORS = (b"_", b"-", b".")


def _family(sep: bytes) -> tuple[re.Pattern[bytes], dict[str, int]]:
    """One pattern for the prefixes that end in ``sep``, anchored on it (a fast scan).

    Group name -> how far the prefix reaches back before the anchor.
    """
    alternatives: list[bytes] = []
    back: dict[str, int] = {}
    for i, (prefix, rest) in enumerate(p for p in _PREFIXES if p[0].endswith(sep)):
        alternatives.append(b"(?P<p%d>(?<=%s)%s)" % (i, re.escape(prefix), rest))
        back[f"p{i}"] = len(prefix) - 1
    # First the byte before the anchor: most separators (in dates, ids, kebab-case) stop here.
    before = sorted({p[-2] for p, _ in _PREFIXES if p.endswith(sep)})
    first = b"(?<=[" + re.escape(bytes(before)) + b"]" + re.escape(sep) + b")"
    return re.compile(re.escape(sep) + first + b"(?:" + b"|".join(alternatives) + b")"), back


_FAMILIES = tuple(_family(sep) for sep in _SEPARATORS)
_PLAIN = tuple(
    (prefix, re.compile(re.escape(prefix) + rest))
    for prefix, rest in _PREFIXES
    if prefix[-1:] not in _SEPARATORS
)

# Anchored inside the token, with a fixed-width look back: (pattern, bytes before the anchor).
_INNER = (
    # Azure AD client secrets: three characters, a digit, "Q~", then 31-34 more.
    (
        re.compile(rb"Q~(?<=[A-Za-z0-9_~.]{3}[0-9]Q~)[A-Za-z0-9_~.-]{31,34}(?![A-Za-z0-9_~.-])"),
        4,
        b"",
    ),
    # Mailchimp API keys: 32 hex digits, "-us" and the data centre.
    (re.compile(rb"-us(?<=[0-9a-f]{32}-us)[0-9]{1,2}(?![A-Za-z0-9])"), 32, b""),
    # DigitalOcean tokens: "dop_v1_" (or doo_, dor_) and 64 hex digits.
    (re.compile(rb"_v1_(?<=do[opr]_v1_)[a-f0-9]{64}(?![A-Za-z0-9])"), 3, b""),
    # Telegram bot tokens: the bot id (8-10 digits), ":AA" and 33 more.
    (re.compile(rb":AA(?<=[0-9]{8}:AA)[A-Za-z0-9_-]{33}(?![A-Za-z0-9_-])"), 8, b"0123456789"),
)


def find_secrets(data: bytes, spans: list[Span]) -> None:
    """Add the span of every credential shape in ``data``."""
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
        _find_jwts(data, spans)
    spans.extend(m.span("token") for m in _BEARER.finditer(data))
    if b"asic" in data:
        for m in _BASIC.finditer(data):
            if _is_basic(m.group("token")):
                spans.append(m.span("token"))
    if b"://" in data:
        spans.extend(m.span("info") for m in _USERINFO.finditer(data))
        _find_webhooks(data, spans)
    for family, reach in _FAMILIES:
        for m in family.finditer(data):
            _prefixed(data, m.start() - reach[m.lastgroup or ""], m.end(), spans)
    for prefix, plain in _PLAIN:
        pos = data.find(prefix)
        while pos != -1:
            found = plain.match(data, pos)
            if found is not None:
                _prefixed(data, pos, found.end(), spans)
            pos = data.find(prefix, pos + 1)
    for pattern, back, longer in _INNER:
        for m in pattern.finditer(data):
            start = m.start() - back
            while start > 0 and data[start - 1] in longer:
                start -= 1
            if not glued(data, start, _WORD):
                spans.append((start, m.end()))


def _prefixed(data: bytes, start: int, end: int, spans: list[Span]) -> None:
    """A prefixed token, if it is a word of its own."""
    if not glued(data, start, _WORD) and (end == len(data) or data[end] not in _WORD):
        spans.append((start, end))


def _find_jwts(data: bytes, spans: list[Span]) -> None:
    for m in _JWT.finditer(data):
        start = m.start()
        floor = max(0, start - 2048)
        while start > floor and data[start - 1] in _B64URL:
            start -= 1
        header = data.find(b"eyJ", start, m.start())
        if header != -1 and m.start() - header >= 8:
            spans.append((escape_end(data, header), m.end()))


def _is_basic(token: bytes) -> bool:
    """Whether ``token`` is base64 of ``user:password`` (printable, with a colon)."""
    padded = token + b"=" * (-len(token) % 4)
    try:
        raw = binascii.a2b_base64(padded, strict_mode=True)
    except binascii.Error:
        return False
    return b":" in raw and raw.isascii() and all(c >= 0x20 for c in raw)


def _find_webhooks(data: bytes, spans: list[Span]) -> None:
    for literal, rest in _WEBHOOK_PATTERNS:
        pos = data.find(literal)
        while pos != -1:
            m = rest.match(data, pos + len(literal))
            if m is not None:
                start = pos
                while start > 0 and data[start - 1] in _URL_HOST:
                    start -= 1
                if data[max(0, start - 3) : start] == b"://":
                    scheme = start - 3
                    while scheme > 0 and data[scheme - 1] in _URL_HOST:
                        scheme -= 1
                    start = scheme
                spans.append((escape_end(data, start), m.end()))
            pos = data.find(literal, pos + 1)
