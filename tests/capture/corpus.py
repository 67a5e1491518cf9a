"""A seeded corpus of secrets and personal data in every place an exchange carries them.

Every value is synthetic: drawn from a seeded RNG in the shape (and with the checksum) of its
kind, never a real key. :func:`secret_cases` plants each value in one exchange, in one of the
locations the sidecar records: a JSON key at some depth, free text in a JSON message, a
header, a query parameter, an SSE stream (the value split across two chunks) and a gzip or
deflate body. :func:`benign_tokens` are ordinary tokens (code, prose, identifiers, UUIDs, git
SHAs, timestamps, versions, prices, numbers) that must survive.

``python -m tests.capture.corpus [path/to/redact.py]`` prints how many values reach the
record, per shape, through :class:`~capture.exchange.RecordBuilder` (the given module's
``Redactor``: the figures before and after a change).
"""

from __future__ import annotations

import base64
import gzip
import importlib.util
import json
import random
import string
import sys
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from capture.exchange import Exchange, RecordBuilder
from capture.slices import SliceExtractor
from shadow.trace.record import TraceRecord
from tests.capture.cards import luhn_complete

__all__ = [
    "LOCATIONS",
    "SHAPES",
    "Case",
    "benign_tokens",
    "exchange",
    "kept_tokens",
    "leaks",
    "record_text",
    "secret_cases",
]

LOWER = string.ascii_lowercase
UPPER = string.ascii_uppercase
DIGITS = string.digits
ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"


def _r(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choices(alphabet, k=n))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- shapes: each returns (the text planted, the needle that must not survive) ---------------
Shape = Callable[[random.Random], tuple[str, str]]


def _same(text: str) -> tuple[str, str]:
    return text, text


def _card(rng: random.Random) -> tuple[str, str]:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("2221", 16), ("37", 15), ("6011", 16)])
    digits = luhn_complete(prefix, length, rng)
    layout = rng.choice(["run", "4s", "4d", "2s", "any"])
    if layout == "run":
        return _same(digits)
    if layout in ("4s", "4d", "2s"):
        sep = {"4s": " ", "4d": "-", "2s": "  "}[layout]
        return _same(sep.join(digits[i : i + 4] for i in range(0, length, 4)))
    cut = sorted(rng.sample(range(2, length - 1), 3))
    parts = [digits[a:b] for a, b in zip([0, *cut], [*cut, length], strict=True)]
    return _same(" ".join(parts))


def _iban(rng: random.Random) -> tuple[str, str]:
    country, bban = rng.choice(
        [
            ("DE", _r(rng, DIGITS, 18)),
            ("GB", _r(rng, UPPER, 4) + _r(rng, DIGITS, 14)),
            ("FR", _r(rng, DIGITS, 10) + _r(rng, UPPER + DIGITS, 11) + _r(rng, DIGITS, 2)),
            ("NL", _r(rng, UPPER, 4) + _r(rng, DIGITS, 10)),
            ("ES", _r(rng, DIGITS, 20)),
            ("IT", _r(rng, UPPER, 1) + _r(rng, DIGITS, 22)),
        ]
    )
    rotated = bban + country + "00"
    check = 98 - int("".join(str(int(c, 36)) for c in rotated)) % 97
    iban = f"{country}{check:02d}{bban}"
    if rng.random() < 0.5:
        iban = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    return _same(iban)


def _ssn(rng: random.Random) -> tuple[str, str]:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    sep = rng.choice("- ")
    return _same(f"{area:03d}{sep}{rng.randint(1, 99):02d}{sep}{rng.randint(1, 9999):04d}")


def _phone_intl(rng: random.Random) -> tuple[str, str]:
    form = rng.randrange(4)
    if form == 0:
        return _same("+" + rng.choice(["1", "44", "49", "33", "91"]) + _r(rng, DIGITS, 10))
    if form == 1:
        return _same(f"+44 20 {_r(rng, DIGITS, 4)} {_r(rng, DIGITS, 4)}")
    if form == 2:
        return _same(f"+49 (0)30 {_r(rng, DIGITS, 7)}")
    return _same(f"+1-{rng.randint(201, 989)}-{rng.randint(201, 989)}-{_r(rng, DIGITS, 4)}")


def _phone_national(rng: random.Random) -> tuple[str, str]:
    area, exchange_ = rng.randint(201, 989), rng.randint(201, 989)
    form = rng.randrange(5)
    if form == 0:
        return _same(f"({area}) {exchange_}-{_r(rng, DIGITS, 4)}")
    if form == 1:
        return _same(f"{area}.{exchange_}.{_r(rng, DIGITS, 4)}")
    if form == 2:
        return _same(f"020 {_r(rng, DIGITS, 4)} {_r(rng, DIGITS, 4)}")  # UK
    if form == 3:
        return _same(
            "0" + str(rng.randint(1, 9)) + "".join(f" {_r(rng, DIGITS, 2)}" for _ in "1234")
        )
    return _same(f"030/{_r(rng, DIGITS, 7)}")  # DE


def _email(rng: random.Random) -> tuple[str, str]:
    local = _r(rng, LOWER, rng.randint(3, 8)) + rng.choice(["", ".", "+", "_"]) + _r(rng, LOWER, 3)
    return _same(f"{local}@{_r(rng, LOWER, 6)}.{rng.choice(['com', 'io', 'de', 'co.uk'])}")


def _jwt(rng: random.Random) -> tuple[str, str]:
    head = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64url(json.dumps({"sub": _r(rng, DIGITS, 8), "iat": 1_700_000_000}).encode())
    return _same(f"{head}.{body}.{_b64url(rng.randbytes(32))}")


def _pem(rng: random.Random) -> tuple[str, str]:
    line = base64.b64encode(rng.randbytes(48)).decode()
    kind = rng.choice(["", "RSA ", "EC ", "OPENSSH "])
    return (f"-----BEGIN {kind}PRIVATE KEY-----\n{line}\n-----END {kind}PRIVATE KEY-----", line)


def _url_password(scheme: str) -> Shape:
    def make(rng: random.Random) -> tuple[str, str]:
        password = _r(rng, ALNUM, 14)
        user = rng.choice(["", _r(rng, LOWER, 5)])
        host = rng.choice(["db.internal", "10.0.0.7", "cache-1"])
        return f"{scheme}://{user}:{password}@{host}:5432/app", password

    return make


def _basic(rng: random.Random) -> tuple[str, str]:
    token = base64.b64encode(f"{_r(rng, LOWER, 6)}:{_r(rng, ALNUM, 12)}".encode()).decode()
    return f"Basic {token}", token


def _bearer(rng: random.Random) -> tuple[str, str]:
    token = _r(rng, ALNUM, 30) + rng.choice(DIGITS)
    return f"Bearer {token}", token


def _env_password(rng: random.Random) -> tuple[str, str]:
    value = _r(rng, ALNUM, 10) + rng.choice(DIGITS) + rng.choice("!#%")
    name = rng.choice(["DB_PASSWORD", "client_secret", "apiKey", "SESSION_TOKEN", "passwd"])
    return f"{name}={value}", value


def _azure_conn(rng: random.Random) -> tuple[str, str]:
    key = base64.b64encode(rng.randbytes(64)).decode()
    name = _r(rng, LOWER, 8)
    return (f"DefaultEndpointsProtocol=https;AccountName={name};AccountKey={key};", key)


def _prefixed(prefix: str, alphabet: str, n: int, suffix: str = "") -> Shape:
    return lambda rng: _same(prefix + _r(rng, alphabet, n) + suffix)


SHAPES: dict[str, Shape] = {
    "openai": _prefixed("sk-proj-", ALNUM + "_-", 64),
    "anthropic": _prefixed("sk-ant-api03-", ALNUM + "_-", 93, "AA"),
    "aws_key_id": lambda rng: _same(rng.choice(["AKIA", "ASIA"]) + _r(rng, UPPER + DIGITS, 16)),
    "gcp_api_key": _prefixed("AIza", ALNUM + "_-", 35),
    "gcp_oauth_secret": _prefixed("GOCSPX-", ALNUM + "_-", 28),
    "gcp_oauth_token": _prefixed("ya29.", ALNUM + "_-", 60),
    "azure_ad_secret": lambda rng: _same(
        _r(rng, ALNUM, 3) + rng.choice(DIGITS) + "Q~" + _r(rng, ALNUM + "_~.-", 34)
    ),
    "azure_storage": _azure_conn,
    "github_classic": lambda rng: _same(rng.choice(["ghp_", "gho_", "ghs_"]) + _r(rng, ALNUM, 36)),
    "github_fine": lambda rng: _same(f"github_pat_{_r(rng, ALNUM, 22)}_{_r(rng, ALNUM, 59)}"),
    "gitlab_pat": _prefixed("glpat-", ALNUM + "_-", 20),
    "gitlab_runner": _prefixed("glrt-", ALNUM + "_-", 24),
    "bitbucket": _prefixed("ATBB", ALNUM, 32),
    "atlassian": _prefixed("ATATT3xFfGF0", ALNUM + "_-", 180),
    "slack_token": lambda rng: _same(
        f"xox{rng.choice('bpa')}-{_r(rng, DIGITS, 11)}-{_r(rng, DIGITS, 12)}-{_r(rng, ALNUM, 24)}"
    ),
    "slack_webhook": lambda rng: _same(
        f"https://hooks.slack.com/services/T{_r(rng, UPPER + DIGITS, 10)}/"
        f"B{_r(rng, UPPER + DIGITS, 10)}/{_r(rng, ALNUM, 24)}"
    ),
    "discord_webhook": lambda rng: _same(
        f"https://discord.com/api/webhooks/{_r(rng, DIGITS, 18)}/{_r(rng, ALNUM + '_-', 68)}"
    ),
    "teams_webhook": lambda rng: _same(
        f"https://{_r(rng, LOWER, 7)}.webhook.office.com/webhookb2/"
        f"{uuid.UUID(int=rng.getrandbits(128))}@{uuid.UUID(int=rng.getrandbits(128))}"
        f"/IncomingWebhook/{_r(rng, HEX, 32)}"
    ),
    "zapier_webhook": lambda rng: _same(
        f"https://hooks.zapier.com/hooks/catch/{_r(rng, DIGITS, 7)}/{_r(rng, LOWER + DIGITS, 6)}/"
    ),
    "stripe_secret": lambda rng: _same(
        rng.choice(["sk_live_", "rk_live_", "sk_test_"]) + _r(rng, ALNUM, 24)
    ),
    "stripe_webhook": _prefixed("whsec_", ALNUM, 32),
    "twilio": _prefixed("SK", HEX, 32),
    "sendgrid": lambda rng: _same(f"SG.{_r(rng, ALNUM + '_-', 22)}.{_r(rng, ALNUM + '_-', 43)}"),
    "mailgun": _prefixed("key-", HEX, 32),
    "mailchimp": lambda rng: _same(_r(rng, HEX, 32) + f"-us{rng.randint(1, 20)}"),
    "npm": _prefixed("npm_", ALNUM, 36),
    "pypi": _prefixed("pypi-AgEIcHlwaS5vcmc", ALNUM + "_-", 60),
    "huggingface": _prefixed("hf_", ALNUM, 34),
    "groq": _prefixed("gsk_", ALNUM, 52),
    "docker": _prefixed("dckr_pat_", ALNUM + "_-", 27),
    "digitalocean": _prefixed("dop_v1_", HEX, 64),
    "shopify": _prefixed("shpat_", HEX, 32),
    "telegram": lambda rng: _same(f"{_r(rng, DIGITS, 10)}:AA{_r(rng, ALNUM + '_-', 33)}"),
    "jwt": _jwt,
    "pem": _pem,
    "postgres_url": _url_password("postgres"),
    "mongodb_url": _url_password("mongodb+srv"),
    "redis_url": _url_password("redis"),
    "https_userinfo": _url_password("https"),
    "basic_text": _basic,
    "bearer_text": _bearer,
    "env_assignment": _env_password,
    "email": _email,
    "card": _card,
    "phone_e164": _phone_intl,
    "phone_national": _phone_national,
    "iban": _iban,
    "ssn": _ssn,
}
ONE_LINE = [name for name in SHAPES if name != "pem"]

# Names that say "secret" in every spelling, for JSON keys, headers and query parameters.
JSON_KEYS = [
    "password", "Password", "userPassword", "db_passwd", "pwd", "passphrase", "secret",
    "clientSecret", "client-secret", "api_key", "apiKey", "API Key", "x-api-key", "accessKey",
    "access_key_id", "private_key", "privateKey", "token", "accessToken", "refresh_token",
    "id-token", "authToken", "auth", "authorization", "credential", "credentials", "session",
    "sessionId", "SESSION_KEY", "cookie", "signature", "connection_string", "secretAccessKey",
]  # fmt: skip
SECRET_HEADERS = [
    "X-Auth-Token", "Ocp-Apim-Subscription-Key", "X-Vendor-Secret", "X-Session-Id",
    "X-Signature", "X-Csrf-Token", "X-Access-Key", "X-Password", "X-Amz-Security-Token",
    "X-Client-Secret", "Private-Token", "X-Shopify-Access-Token", "X-Cookie-Jar",
]  # fmt: skip
SECRET_PARAMS = [
    "access_token", "client_secret", "sessionId", "auth", "signature", "X-Amz-Credential",
    "apiKey", "subscription-key", "password", "sig", "private_token", "session", "authKey",
]  # fmt: skip

LOCATIONS = ("json_key", "json_text", "header", "query", "sse", "gzip_request", "deflate_response")


@dataclass
class Case:
    """One exchange with one value planted in it."""

    shape: str
    location: str
    needle: str
    query: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    response_headers: dict[str, str] = field(default_factory=dict)
    chunks: list[bytes] = field(default_factory=list)


def _nest(rng: random.Random, key: str, value: str) -> dict[str, Any]:
    node: dict[str, Any] = {key: value, "note": "ok"}
    for _ in range(rng.randint(0, 4)):
        node = {rng.choice(["metadata", "config", "items", "user", "extra"]): [node, 1]}
    return node


def _chat(content: str) -> bytes:
    return json.dumps({"model": "m", "messages": [{"role": "user", "content": content}]}).encode()


def _sse_split(text: str, needle: str, rng: random.Random) -> list[bytes]:
    """Two or three SSE events whose content deltas split ``needle`` in two."""
    at = text.index(needle) + rng.randint(1, len(needle) - 1)
    pieces = [text[:at], text[at:]]
    events = [
        b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": p}}]}).encode()
        for p in pieces
    ]
    return [e + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]


def secret_cases(seed: int = 13, per_location: int = 60) -> list[Case]:
    """``per_location`` values in each location (the shapes cycled), drawn from ``seed``."""
    rng = random.Random(seed)
    cases: list[Case] = []
    json_ok = "application/json"
    for location in LOCATIONS:
        names = ONE_LINE if location in ("header", "query") else list(SHAPES)
        for i in range(per_location):
            shape = names[(i + LOCATIONS.index(location) * 7) % len(names)]
            fragment, needle = SHAPES[shape](rng)
            text = f"{rng.choice(['see', 'my', 'use'])} {fragment} {rng.choice(['thanks', 'ok'])}"
            case = Case(shape, location, needle)
            case.headers["content-type"] = json_ok
            if location == "json_key" and i % 2 == 0:  # a secret name, any spelling and depth
                case.shape = "json_key_by_name"
                case.needle = needle = _r(rng, ALNUM, 16)
                doc = _nest(rng, rng.choice(JSON_KEYS), needle)
                case.body = json.dumps({"model": "m", "messages": [], **doc}).encode()
            elif location == "json_key":
                doc = _nest(rng, rng.choice(["value", "text", "field", "data"]), fragment)
                case.body = json.dumps({"model": "m", **doc}).encode()
            elif location == "json_text":
                case.body = _chat(text)
            elif location == "header" and i % 2 == 0:
                case.shape = "header_by_name"
                case.needle = needle = _r(rng, ALNUM + "-_", 24)
                case.headers[rng.choice(SECRET_HEADERS)] = needle
                case.body = _chat("hi")
            elif location == "header":
                case.headers[rng.choice(["X-Debug", "X-Note", "Referer"])] = fragment
                case.body = _chat("hi")
            elif location == "query" and i % 2 == 0:
                case.shape = "query_by_name"
                case.needle = needle = _r(rng, ALNUM, 20)
                case.query = f"model=m&{rng.choice(SECRET_PARAMS)}={needle}&n=1"
                case.body = _chat("hi")
            elif location == "query":
                case.query = (
                    f"model=m&{rng.choice(['q', 'ref', 'note'])}={quote(fragment, safe='')}"
                )
                case.body = _chat("hi")
            elif location == "sse":
                case.body = _chat("hi")
                case.response_headers["content-type"] = "text/event-stream"
                case.chunks = _sse_split(text, needle, rng)
            elif location == "gzip_request":
                case.headers["content-encoding"] = "gzip"
                case.body = gzip.compress(_chat(text))
            else:
                case.body = _chat("hi")
                case.response_headers["content-encoding"] = "deflate"
                reply = {"choices": [{"message": {"role": "assistant", "content": text}}]}
                case.chunks = [zlib.compress(json.dumps(reply).encode())]
            if not case.chunks:
                case.chunks = [b'{"choices":[{"message":{"role":"assistant","content":"ok"}}]}']
            case.response_headers.setdefault("content-type", json_ok)
            cases.append(case)
    return cases


def exchange(case: Case, index: int = 0) -> Exchange:
    """The case as the sidecar's live path would have gathered it."""
    ex = Exchange(
        trace_id=f"t{index}",
        started_ns=time.time_ns(),
        t0=time.perf_counter(),
        method="POST",
        path="/v1/chat/completions",
        query=case.query,
        request_headers=[(k.encode(), v.encode()) for k, v in case.headers.items()],
        cap=1 << 20,
    )
    ex.request_body.add(case.body)
    ex.start_response(200, [(k.encode(), v.encode()) for k, v in case.response_headers.items()])
    for chunk in case.chunks:
        ex.add_response_chunk(chunk)
    ex.finish()
    return ex


def record_text(record: TraceRecord) -> str:
    """Everything a record holds that could carry a planted value, as one string."""
    parts = [record.request.query or "", json.dumps(record.request.headers)]
    parts.append(record.request.body or "")
    if record.request.body_b64:
        parts.append(base64.b64decode(record.request.body_b64).decode("latin-1"))
    if record.response is not None:
        parts += [json.dumps(record.response.headers), record.response.body or ""]
        if record.response.body_b64:
            parts.append(base64.b64decode(record.response.body_b64).decode("latin-1"))
    return "\n".join(parts)


def leaks(case: Case, text: str) -> bool:
    """Whether the needle survives in ``text``, as written or percent-encoded."""
    return any(form in text for form in (case.needle, quote(case.needle, safe="")))


def benign_tokens(seed: int = 7, count: int = 3000) -> list[str]:
    """Ordinary tokens a redactor must keep: code, prose, ids, hashes, times, versions, prices."""
    rng = random.Random(seed)
    words = (
        "the model returned a short answer because max_tokens was low; retry with a longer "
        "budget and check the logs for the request id before you open a ticket"
    ).split()
    code = [
        "def", "return", "self.session_factory()", "import", "os.environ.get", "async",
        "await", "token_count", "max_tokens", "tokenizer", "keyboard", "monkey", "author",
        "authority", "passenger", "secretary", "compass", "keys()", "sessions", "x-request-id",
        "application/json", "null", "true", "-1", "0x1f", "i++", "len(items)", "->",
    ]  # fmt: skip
    out: list[str] = []
    for _ in range(count):
        kind = rng.randrange(12)
        if kind == 0:
            out.append(str(uuid.UUID(int=rng.getrandbits(128), version=4)))
        elif kind == 1:
            out.append(_r(rng, HEX, 40))
        elif kind == 2:
            out.append(f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T10:30:00Z")
        elif kind == 3:
            out.append(str(1_700_000_000_000 + rng.randrange(10**11)))
        elif kind == 4:
            out.append(f"v{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 99)}")
        elif kind == 5:
            out.append(f"${rng.randint(1, 9999)}.{rng.randint(0, 99):02d}")
        elif kind == 6:
            out.append(str(rng.randint(0, 10**6)))
        elif kind == 7:
            out.append(f"{rng.random():.6f}")
        elif kind == 8:
            out.append(rng.choice(code))
        elif kind == 9:
            out.append(f"{rng.choice(['user', 'order', 'task'])}_{rng.randint(1, 99999)}")
        elif kind == 10:
            out.append(f"{rng.randint(1, 255)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.1")
        else:
            out.append(rng.choice(words))
    return out


def kept_tokens(tokens: list[str], output: str) -> int:
    """How many of ``tokens`` (joined by spaces before redaction) are in ``output`` as they were."""
    have = Counter(output.split(" "))
    return sum(min(n, have[token]) for token, n in Counter(tokens).items())


def _redactor_class(path: str | None) -> Any:
    if path is None:
        from capture.redact import Redactor

        return Redactor
    spec = importlib.util.spec_from_file_location("redact_under_test", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Redactor


def main() -> None:
    redactor = _redactor_class(sys.argv[1] if len(sys.argv) > 1 else None)()
    builder = RecordBuilder(redactor=redactor, slices=SliceExtractor())
    cases = secret_cases()
    leaked: Counter[str] = Counter()
    where: Counter[str] = Counter()
    for i, case in enumerate(cases):
        record, _ = builder.build(exchange(case, i))
        if leaks(case, record_text(record)):
            leaked[case.shape] += 1
            where[case.location] += 1
    shapes = {case.shape for case in cases}
    print(f"{sum(leaked.values())} of {len(cases)} values ({len(shapes)} shapes) reach the record")
    print("by location:", dict(where))
    print("by shape:", dict(sorted(leaked.items())))
    tokens = benign_tokens()
    text = " ".join(tokens)
    out = redactor.text(text)
    print(f"benign: {kept_tokens(tokens, out)} of {len(tokens)} tokens kept (text)")


if __name__ == "__main__":
    main()
