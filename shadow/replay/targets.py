"""Sending one captured request to one arm (baseline or candidate) and measuring it right.

A :class:`Target` turns a :class:`~shadow.trace.record.TraceRecord` into the arm's request and
returns an :class:`Attempt`. :class:`HttpTarget` is the real one (aiohttp, the faster client
measured in ``bench/capture_overhead.py``); tests can hand the replayer any object with the same
``send``.

Request transforms, per arm (``[arms.NAME]`` in shadow.toml):
- only a request a route of the allow-list admits is sent (:mod:`shadow.wire.routes`), to the
  arm's base URL + the *normalised* path and the query; a refused one is not sent and its
  attempt carries the reason (``skipped_path``, ...) as its error;
- the headers are built from an allow-list, never from the captured set: the captured
  ``content-type`` and ``accept``, the API's protocol headers (``anthropic-version``), the
  captured headers named in ``replay.pass_headers`` (never one that looks like a credential),
  the arm's ``headers``, and its key from the environment variable ``api_key_env`` in the
  API's auth style (``auth``: Bearer, ``x-api-key``, ``x-goog-api-key``, ``api-key``); query
  parameters that look like credentials are dropped;
- ``body_overrides`` set top-level (or dotted) JSON keys;
- an OpenAI or Azure request that streamed asks for ``stream_options.include_usage`` so usage
  is measured.

Timing follows docs/architecture.md, "Metric definitions": ``latency_ms`` and ``ttft_ms`` count
from the *due* time (a late send counts against the system: no coordinated omission);
``service_ms`` from the actual send.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote_plus

import aiohttp
import msgspec

from shadow.config import ArmConfig
from shadow.errors import ConfigError
from shadow.trace.record import TraceRecord
from shadow.wire.credentials import auth_header, looks_like_credential, pass_header_problem
from shadow.wire.routes import API_AUTH, API_HEADERS, RouteAllowList, SkipReason
from shadow.wire.sse import is_event_stream, reassemble
from shadow.wire.usage import extract_usage, output_text

__all__ = ["Attempt", "HttpTarget", "RefusedRequest", "Target", "build_request", "unsent_headers"]

_SENT_AS_CAPTURED = ("content-type", "accept")
"""The captured headers every replayed request keeps (they describe the body and the answer)."""


@dataclass(slots=True, kw_only=True)
class Attempt:
    """What one send to one arm measured."""

    sent_at: float | None = None
    """Epoch seconds of the actual send (None when nothing was sent)."""
    status: int | None = None
    ttft_ms: float | None = None
    latency_ms: float | None = None
    service_ms: float | None = None
    error: str | None = None
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    output_text: str | None = None
    chunk_offsets_ms: list[float] | None = field(default=None)

    @property
    def http_ok(self) -> bool:
        """2xx and the body parsed (validators are judged by the caller)."""
        return self.error is None and self.status is not None and 200 <= self.status <= 299


class Target(Protocol):
    """One arm of a replay: sends a record's request, returns what it measured."""

    arm: str

    async def send(self, record: TraceRecord, *, due: float) -> Attempt:
        """Send now; ``due`` is the ``time.perf_counter()`` instant the send was scheduled for."""
        ...

    async def aclose(self) -> None:
        """Release connections; safe to call twice."""
        ...


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    stream: bool


class RefusedRequest(Exception):
    """The allow-list refuses a captured request: it is not sent."""

    def __init__(self, reason: SkipReason) -> None:
        super().__init__(reason)
        self.reason: SkipReason = reason


_DEFAULT_ROUTES = RouteAllowList()


def build_request(
    record: TraceRecord,
    arm: ArmConfig,
    *,
    secret: str | None,
    routes: RouteAllowList = _DEFAULT_ROUTES,
    pass_headers: Sequence[str] = (),
) -> _Request:
    """The arm's version of a captured request (see the module docstring for the rules).

    Raises:
        RefusedRequest: no route of ``routes`` admits the request.
    """
    req = record.request
    verdict = routes.check(req.method, req.path, body_whole=not req.body_truncated)
    if verdict.route is None or verdict.path is None:
        raise RefusedRequest(verdict.reason or "skipped_path")
    api = verdict.route.api
    captured = {name.lower(): value for name, value in req.headers.items()}
    headers: dict[str, str] = {}
    for name in (*_SENT_AS_CAPTURED, *(n.lower() for n in pass_headers)):
        value = captured.get(name)
        if value is not None and _passable(name, value):
            headers[name] = value
    for name, default in API_HEADERS.get(api, {}).items():
        value = captured.get(name)
        if value is not None and "[REDACTED]" not in value:
            headers[name] = value
        elif default is not None:
            headers[name] = default
    headers.update({k.lower(): v for k, v in arm.headers.items()})
    if secret:
        name, value = auth_header(API_AUTH[api] if arm.auth == "auto" else arm.auth, secret)
        headers[name] = value
    body = req.body_bytes()
    stream = False
    if body[:1] == b"{":
        try:
            document = msgspec.json.decode(body)
        except msgspec.DecodeError:
            document = None
        if isinstance(document, dict):
            for key, value in arm.body_overrides.items():
                _set_path(document, key, value)
            stream = bool(document.get("stream"))
            if stream and api in ("openai", "azure"):  # Anthropic refuses unknown fields
                options = document.get("stream_options")
                options = dict(options) if isinstance(options, dict) else {}
                options["include_usage"] = True
                document["stream_options"] = options
            body = msgspec.json.encode(document)
    query = _query(req.query)
    url = arm.url.rstrip("/") + verdict.path + (f"?{query}" if query else "")
    return _Request(req.method, url, headers, body, stream)


def _passable(name: str, value: str) -> bool:
    """Whether a captured header may go on (defence in depth: config refuses such names)."""
    if "[REDACTED]" in value:
        return False
    return name in _SENT_AS_CAPTURED or pass_header_problem(name) is None


def _query(query: str) -> str:
    """The captured query without parameters whose names look like credentials."""
    if not query:
        return ""
    kept = [
        part
        for part in query.split("&")
        if part and not looks_like_credential(unquote_plus(part.partition("=")[0]))
    ]
    return "&".join(kept)


def _set_path(document: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = document
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


class HttpTarget:
    """Sends to one arm over a pooled aiohttp session (opened lazily on the running loop)."""

    def __init__(
        self,
        arm: str,
        config: ArmConfig,
        *,
        max_connections: int = 0,
        routes: RouteAllowList = _DEFAULT_ROUTES,
        pass_headers: Sequence[str] = (),
    ) -> None:
        if not config.url:
            raise ConfigError(f"arms.{arm}.url is not set; pass --{arm} URL")
        self.arm = arm
        self.config = config
        self.routes = routes
        self.pass_headers = tuple(pass_headers)
        self._secret: str | None = None
        if config.api_key_env:
            self._secret = os.environ.get(config.api_key_env)
            if not self._secret:
                raise ConfigError(
                    f"arms.{arm}.api_key_env names {config.api_key_env}, which is not set; "
                    "export it or remove api_key_env"
                )
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_s)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300),
                timeout=self._timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def send(self, record: TraceRecord, *, due: float) -> Attempt:
        try:
            request = build_request(
                record,
                self.config,
                secret=self._secret,
                routes=self.routes,
                pass_headers=self.pass_headers,
            )
        except RefusedRequest as refused:
            return Attempt(error=refused.reason)  # nothing sent
        session = self._session_now()
        attempt = Attempt()
        started = time.perf_counter()
        attempt.sent_at = time.time()
        chunks: list[tuple[float, bytes]] = []
        body = b""
        try:
            async with session.request(
                request.method,
                request.url,
                headers=request.headers,
                data=request.body,
                allow_redirects=False,
            ) as resp:
                attempt.status = resp.status
                if is_event_stream(resp.content_type):
                    async for chunk in resp.content.iter_any():
                        chunks.append(((time.perf_counter() - due) * 1000.0, chunk))
                else:
                    body = await resp.read()
        except (TimeoutError, asyncio.TimeoutError):  # noqa: UP041 (aiohttp raises either)
            attempt.error = "timeout"
            # A timeout counts at its timeout value (docs/architecture.md, "Metric definitions").
            attempt.latency_ms = (started - due) * 1000.0 + self.config.timeout_s * 1000.0
            attempt.service_ms = self.config.timeout_s * 1000.0
            return attempt
        except aiohttp.ClientConnectorError:
            attempt.error = "connect"
        except aiohttp.ClientError:
            attempt.error = "connect" if attempt.status is None else "invalid_body"
        end = time.perf_counter()
        attempt.latency_ms = (end - due) * 1000.0
        attempt.service_ms = (end - started) * 1000.0
        if attempt.status is None:
            return attempt
        _measure(attempt, request, body, chunks)
        return attempt


def _measure(
    attempt: Attempt, request: _Request, body: bytes, chunks: list[tuple[float, bytes]]
) -> None:
    status = attempt.status or 0
    stream = reassemble(chunks) if chunks else None
    if stream is not None:
        attempt.ttft_ms = stream.ttft_ms
        attempt.chunk_offsets_ms = stream.chunk_offsets_ms
    usage = extract_usage(request.body, body if stream is None else None, stream, status)
    if usage is not None:
        attempt.model = usage.model
        attempt.prompt_tokens = usage.prompt_tokens
        attempt.completion_tokens = usage.completion_tokens
        attempt.cached_tokens = usage.cached_tokens
    if attempt.error is None:
        if 400 <= status <= 499:
            attempt.error = "http_4xx"
        elif status >= 500:
            attempt.error = "http_5xx"
    if 200 <= status <= 299:
        attempt.output_text = output_text(body, stream)
        parsed = stream is not None and stream.events > 0 and stream.malformed == 0
        if stream is None:
            parsed = _is_json_object(body)
        if attempt.error is None and not parsed:
            attempt.error = "invalid_body"


def _is_json_object(body: bytes) -> bool:
    try:
        return isinstance(msgspec.json.decode(body), dict)
    except msgspec.DecodeError:
        return False


def unsent_headers(headers: Mapping[str, str], pass_headers: Sequence[str] = ()) -> list[str]:
    """Names of captured headers that will not be replayed (for dry-run output)."""
    kept = {*_SENT_AS_CAPTURED, *(n.lower() for n in pass_headers)}
    return sorted(
        n for n, v in headers.items() if n.lower() not in kept or not _passable(n.lower(), v)
    )
