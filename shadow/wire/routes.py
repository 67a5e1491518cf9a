"""Which captured requests may be replayed: ``METHOD /path`` routes over normalised paths.

A replay re-sends real users' requests to two pipelines, so it sends only what is safe by
construction: a request whose method and *normalised* path match a route of the allow-list
(:class:`RouteAllowList`; by default :data:`DEFAULT_ALLOW`, ``POST`` to the inference
endpoint of each supported API). A route is a method and an exact path; ``{name}`` stands for
one segment (or the part of one, as in ``{model}:generateContent``) and never matches ``/``.

Normalising a path (:meth:`RouteAllowList.check`):

1. every ``%XX`` is decoded once (``%2e`` → ``.``, ``%2F`` → ``/``, in any case); what is left
   of a ``%`` (a double encoding such as ``%252e``), a backslash, a ``;`` or any character
   outside RFC 3986's path characters refuses the path;
2. empty segments go (``//`` and a trailing ``/``), ``.`` segments go, and ``..`` removes the
   segment before it, except that a ``..`` above the root, or one that climbs out of the
   leading segments that matched a route (``/v1/chat/completions/../../files``), refuses the
   path as an escape.

The replayer sends the normalised path, never the captured one. A refused request is never
sent; its reason is one of :data:`SKIP_REASONS`: ``skipped_path_escape`` (a ``..`` escape),
``skipped_path`` (no route has this path, or the path is not well formed), ``skipped_method``
(routes have this path, none with this method), ``skipped_body`` (the request's body was not
captured whole — cut at the sidecar's cap, or in a coding it could not decode — so no arm could
be sent what the client sent).

Each route belongs to an :data:`Api`, read from its path (:func:`api_of`); the API says how
an arm's key is sent (:data:`API_AUTH`) and which captured protocol headers the request needs
(:data:`API_HEADERS`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import unquote

from shadow.wire.credentials import AuthStyle

__all__ = [
    "API_AUTH",
    "API_HEADERS",
    "DEFAULT_ALLOW",
    "SKIP_REASONS",
    "Api",
    "Route",
    "RouteAllowList",
    "RouteError",
    "SkipReason",
    "Verdict",
    "api_of",
    "deprecated_paths",
    "route_problem",
]

DEFAULT_ALLOW: Final = (
    "POST /v1/chat/completions",
    "POST /v1/completions",
    "POST /v1/embeddings",
    "POST /v1/responses",
    "POST /v1/messages",
    "POST /openai/deployments/{deployment}/chat/completions",
    "POST /openai/deployments/{deployment}/completions",
    "POST /openai/deployments/{deployment}/embeddings",
    "POST /v1beta/models/{model}:generateContent",
    "POST /v1beta/models/{model}:streamGenerateContent",
)
"""``POST`` to the inference endpoints of OpenAI (and compatible servers), Anthropic, Azure
OpenAI and Gemini; nothing that lists, reads, updates, cancels or deletes."""

SkipReason = Literal[
    "skipped_body",
    "skipped_method",
    "skipped_path",
    "skipped_path_escape",
    "skipped_untranslatable",
]
SKIP_REASONS: Final[tuple[SkipReason, ...]] = (
    "skipped_body",
    "skipped_method",
    "skipped_path",
    "skipped_path_escape",
    "skipped_untranslatable",
)
"""Why a request was not replayed: the result row's ``error`` and the summary's counts
(``skipped_untranslatable``: an arm's ``format`` cannot express it, shadow.wire.translate)."""

Api = Literal["openai", "azure", "anthropic", "gemini"]

API_AUTH: Final[Mapping[Api, AuthStyle]] = {
    "openai": "bearer",
    "azure": "api-key",
    "anthropic": "x-api-key",
    "gemini": "x-goog-api-key",
}
"""How each API takes an arm's key (an arm's ``auth`` overrides it)."""

API_HEADERS: Final[Mapping[Api, Mapping[str, str | None]]] = {
    "anthropic": {"anthropic-version": "2023-06-01", "anthropic-beta": None},
}
"""Protocol headers an API's requests carry, taken from the capture (they hold no secret),
with the value sent when the capture has none (None: send nothing)."""

_PCHAR = re.compile(r"[A-Za-z0-9._~:@!$&'()*+,=-]+")
"""A well-formed segment: RFC 3986's path characters without ``%`` and ``;``."""
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_METHOD = re.compile(r"[A-Z]+")


class RouteError(ValueError):
    """A route pattern that cannot be used; the message says why."""


def api_of(path: str) -> Api:
    """The API a path (or a route's pattern path) belongs to."""
    if path.startswith("/openai/"):
        return "azure"
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return "anthropic"
    if path.startswith("/v1beta/") or ":generateContent" in path or ":streamGenerate" in path:
        return "gemini"
    return "openai"


@dataclass(frozen=True, slots=True)
class Route:
    """One ``METHOD /path`` pattern of the allow-list."""

    method: str
    path: str
    segments: tuple[re.Pattern[str], ...]

    @classmethod
    def parse(cls, pattern: str) -> Route:
        """``"POST /v1/chat/completions"`` as a route; :class:`RouteError` when malformed."""
        parts = pattern.split()
        if len(parts) != 2 or not _METHOD.fullmatch(parts[0]):
            raise RouteError("write each route as 'METHOD /path', e.g. 'POST /v1/chat/completions'")
        method, path = parts
        if not path.startswith("/") or path == "/":
            raise RouteError("a route's path must start with '/' and name an endpoint")
        compiled = []
        for segment in path[1:].split("/"):
            if segment in ("", ".", ".."):
                raise RouteError("a route's path has no empty, '.' or '..' segments")
            regex = ""
            for n, literal in enumerate(_PLACEHOLDER.split(segment)):
                if n % 2:  # a placeholder's name
                    regex += r"[^/]+"
                    continue
                if literal and not _PCHAR.fullmatch(literal):
                    raise RouteError(
                        "a route's path holds letters, digits, '-._~:@!$&()*+,=' and "
                        "{placeholder} segments only"
                    )
                regex += re.escape(literal)
            compiled.append(re.compile(regex))
        return cls(method, path, tuple(compiled))

    @property
    def api(self) -> Api:
        """The API this route belongs to (:func:`api_of` of its path)."""
        return api_of(self.path)

    def matches(self, segments: list[str]) -> bool:
        """Whether a normalised path's segments are exactly this route's."""
        return len(segments) == len(self.segments) and self.prefix(segments) == len(segments)

    def prefix(self, segments: list[str]) -> int:
        """How many leading ``segments`` match this route's leading segments."""
        n = 0
        for segment, regex in zip(segments, self.segments, strict=False):
            if not regex.fullmatch(segment):
                break
            n += 1
        return n

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a request may be sent: the path to send, or why not."""

    path: str | None = None
    """The normalised path (None when refused before it could be normalised)."""
    route: Route | None = None
    """The route that allows it (None: refused)."""
    reason: SkipReason | None = None
    """Why it is refused (None: allowed)."""

    @property
    def allowed(self) -> bool:
        """Whether the request may be sent (to :attr:`path`)."""
        return self.route is not None


class RouteAllowList:
    """The routes a replay may send (see the module docstring)."""

    def __init__(self, patterns: Iterable[str] = DEFAULT_ALLOW) -> None:
        self.routes = tuple(Route.parse(p) for p in patterns)
        if not self.routes:
            raise RouteError("name at least one route; nothing would be replayed")

    @property
    def patterns(self) -> tuple[str, ...]:
        """The routes as written, ``METHOD /path``."""
        return tuple(str(r) for r in self.routes)

    def check(self, method: str, raw_path: str, *, body_whole: bool = True) -> Verdict:
        """Whether ``method`` on the captured ``raw_path`` may be replayed, and where to;
        never a request whose body was not captured whole (``body_whole`` false)."""
        if not body_whole:
            return Verdict(reason="skipped_body")
        if not raw_path.startswith("/"):
            return Verdict(reason="skipped_path")
        stack: list[str] = []
        for segment in unquote(raw_path, errors="replace").split("/"):
            if segment in ("", "."):
                continue
            if segment == "..":
                held = max((r.prefix(stack) for r in self.routes), default=0)
                if len(stack) <= held:  # above the root, or out of a route's matched prefix
                    return Verdict(reason="skipped_path_escape")
                stack.pop()
                continue
            if not _PCHAR.fullmatch(segment):
                return Verdict(reason="skipped_path")
            stack.append(segment)
        path = "/" + "/".join(stack)
        same_path = [r for r in self.routes if r.matches(stack)]
        for route in same_path:
            if route.method == method:
                return Verdict(path=path, route=route)
        return Verdict(path=path, reason="skipped_method" if same_path else "skipped_path")


def route_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a usable route (the fix to print), or None when it is."""
    try:
        Route.parse(pattern)
    except RouteError as error:
        return str(error)
    return None


def deprecated_paths(paths: Iterable[str]) -> str:
    """What to say about ``replay.allowed_paths``, the deprecated alias of ``replay.allow``."""
    allow = ", ".join(f'"POST {p}"' for p in paths)
    return (
        "replay.allowed_paths is deprecated: it now means POST to these exact paths; "
        f"write replay.allow = [{allow}] instead"
    )
