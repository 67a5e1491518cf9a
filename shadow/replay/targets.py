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
- an arm whose ``format`` is another API than the captured request's gets the request
  translated (:mod:`shadow.wire.translate`: an OpenAI Chat request as an Anthropic Messages or
  Gemini generateContent one, for the arm's ``body_overrides.model``) and sent to that API's
  endpoint (``/v1/messages``, ``/v1beta/models/{model}:generateContent``, or
  ``:streamGenerateContent?alt=sse`` when it streams) with that API's headers and auth; a
  request that cannot be translated whole is not sent (``skipped_untranslatable``, the detail
  in :attr:`Attempt.error_detail`);
- ``body_overrides`` set top-level (or dotted) JSON keys, after any translation (Gemini's
  ``model`` goes in the path, not the body);
- an OpenAI or Azure request that streamed asks for ``stream_options.include_usage`` so usage
  is measured.

The answer is read in the arm's API into the common form
(:func:`shadow.wire.translate.read_answer`), so the arms' outputs, tokens and cost compare.

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
import yarl

from shadow.config import ArmConfig
from shadow.errors import ConfigError
from shadow.trace.record import TraceRecord
from shadow.wire.credentials import auth_header, looks_like_credential, pass_header_problem
from shadow.wire.routes import API_AUTH, API_HEADERS, Api, RouteAllowList, SkipReason
from shadow.wire.sse import is_event_stream
from shadow.wire.translate import Format, Translated, Untranslatable, read_answer, translate_request

__all__ = [
    "Attempt",
    "HttpTarget",
    "RefusedRequest",
    "Target",
    "build_request",
    "unsent_headers",
    "untranslatable",
]

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
    cache_write_tokens: int | None = None
    """Prompt tokens written to the provider's prompt cache (part of ``prompt_tokens``)."""
    output_text: str | None = None
    chunk_offsets_ms: list[float] | None = field(default=None)
    error_detail: str | None = None
    """What could not be translated, with ``error`` ``skipped_untranslatable``."""

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


@dataclass(frozen=True, slots=True, kw_only=True)
class _Request:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    stream: bool
    api: Api = "openai"
    """The API the request is sent to, which the answer is read as."""
    model: str | None = None
    """The model asked for when it is not in the body (Gemini's path)."""


class RefusedRequest(Exception):
    """The allow-list refuses a captured request, or it cannot be translated: it is not sent."""

    def __init__(self, reason: SkipReason, detail: str | None = None) -> None:
        super().__init__(reason if detail is None else f"{reason}: {detail}")
        self.reason: SkipReason = reason
        self.detail = detail


_DEFAULT_ROUTES = RouteAllowList()
_API_OF_FORMAT: dict[str, Api] = {"openai": "openai", "anthropic": "anthropic", "gemini": "gemini"}


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
        RefusedRequest: no route of ``routes`` admits the request, or the arm's ``format``
            cannot express it (``skipped_untranslatable``).
    """
    req = record.request
    verdict = routes.check(req.method, req.path, body_whole=not req.body_truncated)
    if verdict.route is None or verdict.path is None:
        raise RefusedRequest(verdict.reason or "skipped_path")
    api: Api = verdict.route.api
    body = req.body_bytes()
    document = _json_document(body)
    translated = None
    if arm.format not in ("auto", api) and not (arm.format == "openai" and api == "azure"):
        translated = _translate(verdict.path, document, arm)
        api = _API_OF_FORMAT[arm.format]
    captured = {name.lower(): value for name, value in req.headers.items()}
    headers: dict[str, str] = {}
    for name in (*_SENT_AS_CAPTURED, *(n.lower() for n in pass_headers)):
        value = captured.get(name)
        if value is not None and _passable(name, value):
            headers[name] = value
    if translated is not None:  # the captured headers describe another API's body
        headers = {k: v for k, v in headers.items() if k not in _SENT_AS_CAPTURED}
        headers["content-type"] = "application/json"
    for name, default in API_HEADERS.get(api, {}).items():
        value = None if translated is not None else captured.get(name)
        if value is not None and "[REDACTED]" not in value:
            headers[name] = value
        elif default is not None:
            headers[name] = default
    headers.update({k.lower(): v for k, v in arm.headers.items()})
    if secret:
        name, value = auth_header(API_AUTH[api] if arm.auth == "auto" else arm.auth, secret)
        headers[name] = value
    path, query, stream = verdict.path, _query(req.query), False
    if translated is not None:
        path, query, stream, document = (
            translated.path, translated.query, translated.stream, translated.body
        )  # fmt: skip
    if document is not None:
        for key, value in arm.body_overrides.items():
            if not (key == "model" and api == "gemini" and translated is not None):
                _set_path(document, key, value)
        stream = stream or bool(document.get("stream"))
        if stream and api in ("openai", "azure"):  # Anthropic refuses unknown fields
            options = document.get("stream_options")
            options = dict(options) if isinstance(options, dict) else {}
            options["include_usage"] = True
            document["stream_options"] = options
        body = msgspec.json.encode(document)
    url = arm.url.rstrip("/") + path + (f"?{query}" if query else "")
    model = arm.body_overrides.get("model") if translated is not None else None
    return _Request(
        method=req.method, url=url, headers=headers, body=body, stream=stream, api=api,
        model=model if isinstance(model, str) else None,
    )  # fmt: skip


def _json_document(body: bytes) -> dict[str, Any] | None:
    if body[:1] != b"{":
        return None
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    return document if isinstance(document, dict) else None


def _translate(path: str, document: dict[str, Any] | None, arm: ArmConfig) -> Translated:
    """The request translated into ``arm.format``'s API; RefusedRequest when it cannot be."""
    if arm.format == "openai":
        detail = "only OpenAI Chat Completions requests are translated"
    elif not path.endswith("/chat/completions"):
        detail = f"{path} has no {arm.format} equivalent (only chat completions translate)"
    elif document is None:
        detail = "the request body is not a JSON object"
    else:
        model = arm.body_overrides.get("model")
        try:
            to: Format = "anthropic" if arm.format == "anthropic" else "gemini"
            return translate_request(document, to, model=str(model or ""))
        except Untranslatable as refused:
            detail = refused.detail
    raise RefusedRequest("skipped_untranslatable", detail)


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

    async def preconnect(self, count: int, timeout_s: float) -> int:
        """Open up to ``count`` connections to the arm's host into the pool, sending nothing.

        Returns how many opened within ``timeout_s`` (the rest are abandoned). Never raises
        for a connection that fails: it is simply not there, and the send that needs it
        reports the failure as usual. At the start of a fast replay every send otherwise
        finds the pool empty and opens its own connection while more sends fall due
        (measured at 4,000 sends/s: about 20 connections per arm, and in one run of four the
        first 100 ms all late, up to 9 ms).
        """
        connector = self._session_now().connector
        if self._max_connections:
            count = min(count, self._max_connections)  # more would only wait for a slot
        if count < 1 or connector is None:
            return 0
        url = yarl.URL(self.config.url)
        loop = asyncio.get_running_loop()

        async def one() -> aiohttp.connector.Connection:
            # Never sent: the connector reads only its host, port and TLS settings.
            request = aiohttp.ClientRequest("GET", url, loop=loop)
            return await connector.connect(request, [], self._timeout)

        tasks = [asyncio.ensure_future(one()) for _ in range(count)]
        done, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        opened = 0
        for task in done:
            if task.exception() is None:
                task.result().release()  # back to the pool, kept alive for the first sends
                opened += 1
        return opened

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def untranslatable(self, record: TraceRecord) -> str | None:
        """What of ``record``'s request this arm's ``format`` cannot express (None: nothing;
        a request the route allow-list refuses is not this method's to judge)."""
        if self.config.format == "auto":
            return None
        try:
            build_request(record, self.config, secret=None, routes=self.routes)
        except RefusedRequest as refused:
            return refused.detail if refused.reason == "skipped_untranslatable" else None
        return None

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
            return Attempt(error=refused.reason, error_detail=refused.detail)  # nothing sent
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
    answer = read_answer(
        request.api,
        status,
        body,
        chunks,
        request_body=request.body,
        requested_model=request.model or _requested_model(request.body),
    )
    if chunks:
        attempt.ttft_ms = answer.ttft_ms
        attempt.chunk_offsets_ms = answer.chunk_offsets_ms
    attempt.model = answer.model
    attempt.prompt_tokens = answer.prompt_tokens
    attempt.completion_tokens = answer.completion_tokens
    attempt.cached_tokens = answer.cached_tokens
    attempt.cache_write_tokens = answer.cache_write_tokens
    if attempt.error is None:
        if 400 <= status <= 499:
            attempt.error = "http_4xx"
        elif status >= 500:
            attempt.error = "http_5xx"
    if 200 <= status <= 299:
        attempt.output_text = answer.output_text
        if attempt.error is None and not answer.parsed:
            attempt.error = "invalid_body"


def _requested_model(body: bytes) -> str | None:
    document = _json_document(body)
    model = document.get("model") if document is not None else None
    return model if isinstance(model, str) else None


def unsent_headers(headers: Mapping[str, str], pass_headers: Sequence[str] = ()) -> list[str]:
    """Names of captured headers that will not be replayed (for dry-run output)."""
    kept = {*_SENT_AS_CAPTURED, *(n.lower() for n in pass_headers)}
    return sorted(
        n for n, v in headers.items() if n.lower() not in kept or not _passable(n.lower(), v)
    )


def untranslatable(target: Target, record: TraceRecord) -> str | None:
    """What of ``record``'s request ``target`` cannot be sent translated, or None (also for a
    target that does not translate, one without an ``untranslatable`` method)."""
    check = getattr(target, "untranslatable", None)
    detail = check(record) if callable(check) else None
    return detail if isinstance(detail, str) else None
