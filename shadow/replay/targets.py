"""Sending one captured request to one arm (baseline or candidate) and measuring it right.

A :class:`Target` turns a :class:`~shadow.trace.record.TraceRecord` into the arm's request and
returns an :class:`Attempt`. :class:`HttpTarget` is the real one (aiohttp, the faster client
measured in ``bench/capture_overhead.py``); tests can hand the replayer any object with the same
``send``.

Request transforms, per arm (``[arms.NAME]`` in shadow.toml):
- the URL is the arm's base URL + the captured path and query;
- captured credentials are never replayed: Authorization, Cookie, API-key headers and any
  header whose captured value was redacted are dropped; the arm's own credentials come from
  the environment variable named by ``api_key_env`` (sent as ``Authorization: Bearer``);
- ``headers`` are added, ``body_overrides`` set top-level (or dotted) JSON keys;
- a request that streamed asks for ``stream_options.include_usage`` so usage is measured.

Timing follows docs/architecture.md, "Metric definitions": ``latency_ms`` and ``ttft_ms`` count
from the *due* time (a late send counts against the system: no coordinated omission);
``service_ms`` from the actual send.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import msgspec

from shadow.config import ArmConfig
from shadow.errors import ConfigError
from shadow.trace.record import TraceRecord
from shadow.wire.credentials import ACCOUNT_HEADERS, CREDENTIAL_HEADERS
from shadow.wire.sse import is_event_stream, reassemble
from shadow.wire.usage import extract_usage, output_text

__all__ = ["Attempt", "HttpTarget", "Target", "build_request"]

_DROP = (
    frozenset(
        {
            "host", "content-length", "connection", "keep-alive", "transfer-encoding", "upgrade",
            "te", "trailer", "proxy-connection", "expect", "accept-encoding",
        }
    )
    | CREDENTIAL_HEADERS  # credentials and production's account: never replayed
    | ACCOUNT_HEADERS
)  # fmt: skip


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


def build_request(record: TraceRecord, arm: ArmConfig, *, secret: str | None) -> _Request:
    """The arm's version of a captured request (see the module docstring for the rules)."""
    req = record.request
    headers = {
        name: value
        for name, value in req.headers.items()
        if name not in _DROP and "[REDACTED]" not in value
    }
    headers.update({k.lower(): v for k, v in arm.headers.items()})
    if secret:
        headers["authorization"] = f"Bearer {secret}"
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
            if stream:
                options = document.get("stream_options")
                options = dict(options) if isinstance(options, dict) else {}
                options["include_usage"] = True
                document["stream_options"] = options
            body = msgspec.json.encode(document)
    url = arm.url.rstrip("/") + req.path + (f"?{req.query}" if req.query else "")
    return _Request(req.method, url, headers, body, stream)


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

    def __init__(self, arm: str, config: ArmConfig, *, max_connections: int = 0) -> None:
        if not config.url:
            raise ConfigError(f"arms.{arm}.url is not set; pass --{arm} URL")
        self.arm = arm
        self.config = config
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
        request = build_request(record, self.config, secret=self._secret)
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


def redacted_headers(headers: Mapping[str, str]) -> list[str]:
    """Names of captured headers that will not be replayed (for dry-run output)."""
    return sorted(n for n, v in headers.items() if n in _DROP or "[REDACTED]" in v)
