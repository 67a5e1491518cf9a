"""The simulated OpenAI-compatible model server, as a plain ASGI application.

Plain ASGI rather than a framework: the server must never be the bottleneck of a benchmark
(>= 2,000 requests/s on one core at time-scale 0), and the surface is six routes.

Routes: ``POST /v1/chat/completions`` and ``POST /v1/completions`` (both with ``stream`` and
``stream_options.include_usage``), ``POST /v1/embeddings``, ``GET /v1/models``, ``GET /health``.

Embeddings are deterministic and instant (no latency model, no injected faults): a signed,
hashed bag of words (lower-cased word runs, BLAKE2b of each picks a dimension and a sign)
in 256 dimensions unless the request asks for ``dimensions``, L2-normalised, so texts sharing
words are close. ``encoding_format`` ``float`` and ``base64`` (little-endian float32) are
served; ``usage.prompt_tokens`` counts the inputs by the usage rule below.

Usage rule: ``prompt_tokens`` counts the prompt under :mod:`shadow.wire.tokens` (whitespace-
separated runs over every message's content), ``completion_tokens`` the words of the answer,
each word being one token; streaming sends one token per chunk. ``cached_tokens`` is always 0.

Randomness is reproducible: answer text depends on (prompt, ``--seed``, model); everything drawn
per call (temperature variation, injected faults) comes from a generator seeded by
(``--seed``, the call's arrival number), or by the request's own ``seed`` when it sends one.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import random
import re
import struct
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import msgspec

from shadow.sim.generate import Answer, answer, prompt_digest
from shadow.sim.profiles import PROFILES, ModelSpec, choose_model, is_hard
from shadow.wire.tokens import count_tokens, prompt_text

__all__ = ["FaultConfig", "MockLLM"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]
_SSE = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
]
_WORD = re.compile(r"\w+", re.UNICODE)
_EMBEDDING_DIMS = 256
_ERRORS = (
    # (status, type, message, share of injected errors)
    (429, "rate_limit_exceeded", "Rate limit reached (injected by shadow mock-llm).", 0.4),
    (500, "server_error", "The server had an error (injected by shadow mock-llm).", 0.3),
    (503, "service_unavailable", "The engine is overloaded (injected by shadow mock-llm).", 0.3),
)


@dataclass(frozen=True, kw_only=True)
class FaultConfig:
    """Injected faults, each a per-call probability drawn in arrival order."""

    error_rate: float = 0.0
    slow_rate: float = 0.0
    slow_factor: float = 10.0
    hang_rate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("error_rate", "slow_rate", "hang_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is {value}; it must be between 0 and 1")
        if self.error_rate + self.slow_rate + self.hang_rate > 1.0:
            raise ValueError("error_rate + slow_rate + hang_rate must not exceed 1")
        if self.slow_factor < 1:
            raise ValueError(f"slow_factor is {self.slow_factor}; it must be >= 1")


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class _Slots:
    """A model's concurrent slots: a FIFO queue in front of ``n`` workers."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.busy = 0
        self._sem = asyncio.Semaphore(n)

    async def __aenter__(self) -> _Slots:
        await self._sem.acquire()
        self.busy += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.busy -= 1
        self._sem.release()


class MockLLM:
    """ASGI app simulating one ``shadow mock-llm`` profile (see the module docstring)."""

    def __init__(
        self,
        profile: str = "large",
        *,
        seed: int = 0,
        time_scale: float = 1.0,
        faults: FaultConfig | None = None,
        slots: int | None = None,
    ) -> None:
        if profile not in PROFILES:
            raise ValueError(f"profile {profile!r} is unknown; choose one of {', '.join(PROFILES)}")
        if time_scale < 0:
            raise ValueError(f"time_scale is {time_scale}; it must be >= 0")
        self.profile = profile
        self.seed = seed
        self.time_scale = time_scale
        self.faults = faults or FaultConfig()
        self.calls = 0
        self.slots_override = slots
        self._slots: dict[str, _Slots] = {}
        self._fingerprint = (
            "fp_" + hashlib.blake2b(f"{profile}:{seed}".encode(), digest_size=5).hexdigest()
        )
        self._models_body = msgspec.json.encode(
            {
                "object": "list",
                "data": [
                    {"id": m.model_id, "object": "model", "created": 0, "owned_by": "shadow"}
                    for m in PROFILES[profile]
                ],
            }
        )

    # -- ASGI ---------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":  # pragma: no cover - websockets are not served
            return
        method, path = scope["method"], scope["path"]
        if path in ("/v1/chat/completions", "/v1/completions"):
            if method != "POST":
                await _error(send, 405, "invalid_request_error", f"{method} not allowed on {path}")
                return
            await self._completion(scope, receive, send, chat=path == "/v1/chat/completions")
        elif path == "/v1/embeddings":
            if method != "POST":
                await _error(send, 405, "invalid_request_error", f"{method} not allowed on {path}")
                return
            await self._embeddings(receive, send)
        elif path == "/v1/models" and method == "GET":
            await _respond(send, 200, self._models_body)
        elif path == "/health" and method in ("GET", "HEAD"):
            await _respond(send, 200, b'{"status":"ok"}')
        else:
            await _error(send, 404, "not_found", f"no route {method} {path}")

    # -- embeddings ---------------------------------------------------------------------------

    async def _embeddings(self, receive: Receive, send: Send) -> None:
        try:
            texts, dims, as_base64, model = _parse_embeddings(await _read_body(receive))
        except _BadRequest as exc:
            await _error(send, 400, "invalid_request_error", str(exc), param=exc.param)
            return
        data = []
        for index, text in enumerate(texts):
            vector = _embedding(text, dims)
            embedding: list[float] | str = (
                base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode("ascii")
                if as_base64
                else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(count_tokens(text) for text in texts)
        body = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        await _respond(send, 200, msgspec.json.encode(body))

    # -- completions --------------------------------------------------------------------------

    async def _completion(self, scope: Scope, receive: Receive, send: Send, *, chat: bool) -> None:
        self.calls += 1
        call_index = self.calls
        raw = await _read_body(receive)
        try:
            body = _parse_request(raw, chat=chat)
        except _BadRequest as exc:
            await _error(send, 400, "invalid_request_error", str(exc), param=exc.param)
            return
        request_seed = body.get("seed")
        call_rng = random.Random(
            request_seed if isinstance(request_seed, int) else self.seed * 1_000_003 + call_index
        )
        prompt = prompt_text(body)
        prompt_tokens = count_tokens(prompt)
        intent = _intent(body, scope)
        model = choose_model(self.profile, prompt_tokens, intent)
        hard = is_hard(prompt_tokens, intent)
        temperature = body.get("temperature")
        result = answer(
            prompt_digest(prompt),
            seed=self.seed,
            model_id=model.model_id,
            drift=model.drift_hard if hard else model.drift_easy,
            length_factor=model.length_factor_hard if hard else 1.0,
            max_tokens=_max_tokens(body),
            temperature=1.0 if temperature is None else float(temperature),
            call_rng=call_rng,
        )
        fault = call_rng.random()
        f = self.faults
        slow = 1.0
        if fault < f.error_rate:
            await self._injected_error(send, model, call_rng)
            return
        if fault < f.error_rate + f.hang_rate:
            await _hang(receive)
            return
        if fault < f.error_rate + f.hang_rate + f.slow_rate:
            slow = f.slow_factor
        stream = bool(body.get("stream"))
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        slots = self._slots.get(model.model_id)
        if slots is None:
            slots = self._slots[model.model_id] = _Slots(self.slots_override or model.slots)
        async with slots:
            meta = _Meta(
                id=("chatcmpl-" if chat else "cmpl-") + f"{call_index:012x}",
                created=int(time.time()),
                model=model.model_id,
                fingerprint=self._fingerprint,
                chat=chat,
                prompt_tokens=prompt_tokens,
            )
            await self._sleep(model.ttft_base_ms + model.prefill_ms_per_token * prompt_tokens, slow)
            if stream:
                await self._stream(send, meta, result, model, slots, slow, include_usage)
            else:
                decode_ms = self._decode_ms(model, slots) * max(0, len(result.words) - 1)
                await self._sleep(decode_ms, slow)
                await _respond(send, 200, _completion_body(meta, result))

    async def _stream(
        self,
        send: Send,
        meta: _Meta,
        result: Answer,
        model: ModelSpec,
        slots: _Slots,
        slow: float,
        include_usage: bool,
    ) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": _SSE})
        if meta.chat:
            await _event(send, meta.chunk({"role": "assistant", "content": ""}, None))
        for i, word in enumerate(result.words):
            if i:
                await self._sleep(self._decode_ms(model, slots), slow)
            piece = word if i == 0 else " " + word
            await _event(send, meta.chunk(piece, None))
        await _event(send, meta.chunk(None, result.finish_reason))
        if include_usage:
            await _event(send, meta.usage_chunk(len(result.words)))
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    def _decode_ms(self, model: ModelSpec, slots: _Slots) -> float:
        return model.decode_ms_per_token * (1.0 + model.batch_slowdown * slots.busy / slots.n)

    async def _sleep(self, ms: float, slow: float) -> None:
        if self.time_scale > 0 and ms > 0:
            await asyncio.sleep(ms * slow * self.time_scale / 1000.0)

    async def _injected_error(self, send: Send, model: ModelSpec, rng: random.Random) -> None:
        pick = rng.random()
        for status, kind, message, share in _ERRORS:  # noqa: B007 (used after the loop)
            if pick < share or status == _ERRORS[-1][0]:
                break
            pick -= share
        await self._sleep(model.ttft_base_ms, 1.0)
        headers = [*_JSON, (b"retry-after", b"1")] if status == 429 else _JSON
        await _respond(send, status, _error_body(kind, message, None), headers)


@dataclass(frozen=True, slots=True)
class _Meta:
    id: str
    created: int
    model: str
    fingerprint: str
    chat: bool
    prompt_tokens: int

    def usage(self, completion_tokens: int) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
        }

    def chunk(self, content: str | dict[str, Any] | None, finish: str | None) -> bytes:
        if self.chat:
            delta: dict[str, Any]
            if isinstance(content, dict):
                delta = content
            else:
                delta = {} if content is None else {"content": content}
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
            kind = "chat.completion.chunk"
        else:
            choice = {"index": 0, "text": content or "", "finish_reason": finish, "logprobs": None}
            kind = "text_completion"
        return msgspec.json.encode(
            {
                "id": self.id,
                "object": kind,
                "created": self.created,
                "model": self.model,
                "system_fingerprint": self.fingerprint,
                "choices": [choice],
            }
        )

    def usage_chunk(self, completion_tokens: int) -> bytes:
        return msgspec.json.encode(
            {
                "id": self.id,
                "object": "chat.completion.chunk" if self.chat else "text_completion",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": self.fingerprint,
                "choices": [],
                "usage": self.usage(completion_tokens),
            }
        )


def _completion_body(meta: _Meta, result: Answer) -> bytes:
    choice: dict[str, Any]
    if meta.chat:
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": result.text, "refusal": None},
            "finish_reason": result.finish_reason,
            "logprobs": None,
        }
    else:
        choice = {
            "index": 0,
            "text": result.text,
            "finish_reason": result.finish_reason,
            "logprobs": None,
        }
    return msgspec.json.encode(
        {
            "id": meta.id,
            "object": "chat.completion" if meta.chat else "text_completion",
            "created": meta.created,
            "model": meta.model,
            "system_fingerprint": meta.fingerprint,
            "choices": [choice],
            "usage": meta.usage(len(result.words)),
        }
    )


def _parse_request(raw: bytes, *, chat: bool) -> dict[str, Any]:
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise _BadRequest("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _BadRequest("request body must be a JSON object")
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _BadRequest("'messages' must be a non-empty array", param="messages")
    elif not isinstance(body.get("prompt"), str | list):
        raise _BadRequest("'prompt' must be a string or an array of strings", param="prompt")
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise _BadRequest("'max_tokens' must be an integer >= 1", param="max_tokens")
    temperature = body.get("temperature")
    if temperature is not None and (
        not isinstance(temperature, int | float) or not 0 <= temperature <= 2
    ):
        raise _BadRequest("'temperature' must be a number between 0 and 2", param="temperature")
    return body


def _parse_embeddings(raw: bytes) -> tuple[list[str], int, bool, str]:
    """(texts, dimensions, base64?, model) of an embeddings request, or :class:`_BadRequest`."""
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise _BadRequest("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _BadRequest("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _BadRequest("'model' must be a non-empty string", param="model")
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise _BadRequest(
            "'input' must be a string or a non-empty array of strings (token arrays are not "
            "served)",
            param="input",
        )
    dims = body.get("dimensions", _EMBEDDING_DIMS)
    if not isinstance(dims, int) or isinstance(dims, bool) or not 1 <= dims <= 4096:
        raise _BadRequest("'dimensions' must be an integer between 1 and 4096", param="dimensions")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise _BadRequest("'encoding_format' must be 'float' or 'base64'", param="encoding_format")
    return texts, dims, encoding == "base64", model


def _embedding(text: str, dims: int) -> list[float]:
    """A signed hashed bag of words, L2-normalised; a text with no words gets the first axis."""
    vector = [0.0] * dims
    for word in _WORD.findall(text.lower()):
        h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
        vector[(h >> 1) % dims] += 1.0 if h & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0.0:
        vector[0] = norm = 1.0
    return [x / norm for x in vector]


def _max_tokens(body: dict[str, Any]) -> int | None:
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    return limit if isinstance(limit, int) else None


def _intent(body: dict[str, Any], scope: Scope) -> str | None:
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("intent"), str):
        return str(metadata["intent"])
    for name, value in scope["headers"]:
        if name == b"x-intent":
            return bytes(value).decode("latin-1")
    return None


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] = _JSON
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _event(send: Send, data: bytes) -> None:
    await send(
        {"type": "http.response.body", "body": b"data: " + data + b"\n\n", "more_body": True}
    )


def _error_body(kind: str, message: str, param: str | None) -> bytes:
    return msgspec.json.encode(
        {"error": {"message": message, "type": kind, "param": param, "code": kind}}
    )


async def _error(
    send: Send, status: int, kind: str, message: str, param: str | None = None
) -> None:
    await _respond(send, status, _error_body(kind, message, param))


async def _hang(receive: Receive) -> None:
    """Never answer: wait until the client gives up (disconnects) or the server stops."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
