"""capture.redact on a seeded corpus: planted secrets of every kind in every carrier, and decoys."""

from __future__ import annotations

import base64
import json
import random
import string
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from urllib.parse import quote, quote_plus

from capture.names import is_secret_name
from capture.redact import Redactor
from shadow.config import RedactionConfig
from shadow.wire.credentials import CREDENTIAL_HEADERS, CREDENTIAL_PARAMS
from shadow.wire.tokens import VOCABULARY
from tests.capture.cards import luhn_complete, luhn_ok

R = "[REDACTED]"
ALNUM = string.ascii_letters + string.digits
UPPER_DIGITS = string.ascii_uppercase + string.digits

# --- secrets of every kind ------------------------------------------------------------------

Secret = tuple[str, tuple[str, ...]]
"""What is planted (the fragment) and the strings that must not survive redaction."""


def _rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choices(alphabet, k=n))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _card(rng: random.Random) -> Secret:
    prefix, length, layout = rng.choice(
        [
            ("4", 16, (4, 4, 4, 4)),
            (str(rng.randint(51, 55)), 16, (4, 4, 4, 4)),
            (str(rng.randint(2221, 2720)), 16, (4, 4, 4, 4)),
            (rng.choice(["34", "37"]), 15, (4, 6, 5)),
            ("6011", 16, (4, 4, 4, 4)),
            ("36", 14, (4, 6, 4)),
            ("4", 19, (4, 4, 4, 4, 3)),
            ("4", 13, (13,)),
        ]
    )
    digits = luhn_complete(prefix, length, rng)
    sep = rng.choice(["", " ", "-"]) if len(layout) > 1 else ""
    groups, pos = [], 0
    for size in layout if sep else (length,):
        groups.append(digits[pos : pos + size])
        pos += size
    text = sep.join(groups)
    return text, (text,)


def _email(rng: random.Random) -> Secret:
    local = _rand(rng, string.ascii_lowercase + string.digits, rng.randint(2, 10))
    if rng.random() < 0.5:
        local += rng.choice(".+_-") + _rand(rng, string.ascii_lowercase, rng.randint(2, 6))
    domain = _rand(rng, string.ascii_lowercase, rng.randint(3, 10))
    text = f"{local}@{domain}{rng.choice(['.com', '.io', '.co.uk', '.org', '.dev'])}"
    return text, (text,)


def _openai(rng: random.Random) -> Secret:
    prefix = rng.choice(["sk-", "sk-proj-", "sk-svcacct-", "sk-admin-"])
    text = prefix + _rand(rng, ALNUM + "-_", rng.randint(40, 150))
    return text, (text,)


def _anthropic(rng: random.Random) -> Secret:
    text = "sk-ant-api03-" + _rand(rng, ALNUM + "-_", 93) + "AA"
    return text, (text,)


def _aws_key_id(rng: random.Random) -> Secret:
    text = rng.choice(["AKIA", "ASIA"]) + _rand(rng, UPPER_DIGITS, 16)
    return text, (text,)


def _aws_secret(rng: random.Random) -> Secret:
    value = _rand(rng, ALNUM + "/+", 40)
    template = rng.choice(
        [
            "aws_secret_access_key = {}",
            "AWS_SECRET_ACCESS_KEY={}",
            "aws_secret_access_key: {}",
            '"aws_secret_access_key": "{}"',
            "Aws_Secret_Access_Key='{}'",
        ]
    )
    return template.format(value), (value,)


def _github(rng: random.Random) -> Secret:
    if rng.random() < 0.3:
        text = "github_pat_" + _rand(rng, ALNUM, 22) + "_" + _rand(rng, ALNUM, 59)
    else:
        text = rng.choice(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]) + _rand(rng, ALNUM, 36)
    return text, (text,)


def _slack(rng: random.Random) -> Secret:
    numbers = _rand(rng, string.digits, 11) + "-" + _rand(rng, string.digits, 13)
    text = f"xox{rng.choice('abprs')}-{numbers}-{_rand(rng, ALNUM, 24)}"
    return text, (text,)


def _google(rng: random.Random) -> Secret:
    text = "AIza" + _rand(rng, ALNUM + "-_", 35)
    return text, (text,)


def _huggingface(rng: random.Random) -> Secret:
    text = "hf_" + _rand(rng, string.ascii_letters, 34)
    return text, (text,)


def _gitlab(rng: random.Random) -> Secret:
    text = "glpat-" + _rand(rng, ALNUM + "-_", 20)
    return text, (text,)


def _stripe(rng: random.Random) -> Secret:
    text = rng.choice(["sk_live_", "rk_live_", "sk_test_"]) + _rand(rng, ALNUM, rng.randint(24, 99))
    return text, (text,)


def _jwt(rng: random.Random) -> Secret:
    header = _b64url(json.dumps({"alg": rng.choice(["HS256", "RS256"]), "typ": "JWT"}).encode())
    claims = {"sub": str(rng.getrandbits(40)), "iat": 1_700_000_000 + rng.randrange(10**7)}
    payload = _b64url(json.dumps(claims).encode())
    text = f"{header}.{payload}.{_b64url(rng.randbytes(32))}"
    return text, (text,)


def _bearer(rng: random.Random) -> Secret:
    token = _rand(rng, ALNUM + "-._~+/", rng.randint(20, 60)) + rng.choice(string.digits)
    return f"{rng.choice(['Bearer', 'bearer'])} {token}", (token,)


def _pem(rng: random.Random) -> Secret:
    kind = rng.choice(["", "RSA ", "EC ", "OPENSSH ", "ENCRYPTED "])
    lines = [base64.b64encode(rng.randbytes(48)).decode() for _ in range(rng.randint(3, 8))]
    body = "\n".join(lines)
    text = f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----"
    return text, tuple(lines)


SECRETS: dict[str, Callable[[random.Random], Secret]] = {
    "card": _card,
    "email": _email,
    "openai": _openai,
    "anthropic": _anthropic,
    "aws_key_id": _aws_key_id,
    "aws_secret": _aws_secret,
    "github": _github,
    "slack": _slack,
    "google": _google,
    "huggingface": _huggingface,
    "gitlab": _gitlab,
    "stripe": _stripe,
    "jwt": _jwt,
    "bearer": _bearer,
    "pem": _pem,
}
ONE_LINE = [kind for kind in SECRETS if kind != "pem"]  # header values hold no newline

# --- ordinary text that must survive --------------------------------------------------------

MODELS = [
    "gpt-4o-mini",
    "gpt-4o-2024-08-06",
    "claude-3-5-sonnet-20241022",
    "text-embedding-3-small",
    "llama-3.1-70b-instruct",
]
PLAIN_DECOYS = [
    "sk",
    "task-123",
    "disk-usage",
    "risk-score-v2",
    "ask_user",
    "AKIA",
    "sk-short",
    "xoxb",
    "clearer",
    "nearer",
    "@decorator",
    "user@localhost",
    "v1.2.3",
    "10.0.0.1",
    "$12.50",
    "-0.0451",
    "2024-01-15T10:30:00Z",
]


def _decoy(rng: random.Random) -> str:
    """An ordinary token that looks a little like a secret: ids, timestamps, names."""
    choice = rng.randrange(9)
    if choice == 0:  # a 16-digit id that fails Luhn
        number = _rand(rng, "23456", 1) + _rand(rng, string.digits, 15)
        return number if not luhn_ok(number) else number[:-1] + str((int(number[-1]) + 1) % 10)
    if choice == 1:  # a Luhn-valid number outside the card industries (2-6) is kept too
        return luhn_complete(rng.choice("1789"), 16, rng)
    if choice == 2:
        return str(1_700_000_000_000 + rng.randrange(10**11))  # epoch milliseconds
    if choice == 3:
        return str(1_700_000_000_000_000_000 + rng.randrange(10**17))  # epoch nanoseconds
    if choice == 4:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if choice == 5:  # a commit hash: digit runs glued to letters are not card numbers
        return rng.choice("abcdef") + _rand(rng, "0123456789abcdef", 39)
    if choice == 6:
        return f"0.{_rand(rng, string.digits, 17)}"  # a float64 repr: fractions are not cards
    if choice == 7:
        return rng.choice(MODELS)
    return rng.choice(PLAIN_DECOYS)


BEFORE = [" ", "\n", "(", '"', "'", ": ", "=", "\t", "—", "\n\n", "key: "]
AFTER = [" ", "\n", ", ", ") ", "; ", '" ', "\t", ". "]

# --- the corpus -----------------------------------------------------------------------------


@dataclass
class Doc:
    """One generated input, what was planted in it, and its redacted output."""

    kind: str
    planted: list[str] = field(default_factory=list)  # secret kinds
    needles: list[str] = field(default_factory=list)
    decoys: list[str] = field(default_factory=list)
    data: object = None
    output: object = None


def _prose(rng: random.Random, doc: Doc, secrets: list[str]) -> str:
    """Code-ish words with decoys, and the secrets planted between words."""
    parts: list[str] = []
    for _ in range(rng.randint(10, 80)):
        parts.append(rng.choice(VOCABULARY))
        if rng.random() < 0.2:  # a word after each decoy keeps decoys apart
            decoy = _decoy(rng)
            doc.decoys.append(decoy)
            parts += [decoy, rng.choice(VOCABULARY)]
    for kind in secrets:
        fragment, needles = SECRETS[kind](rng)
        doc.planted.append(kind)
        doc.needles += needles
        planted = rng.choice(BEFORE) + fragment + rng.choice(AFTER)
        parts.insert(rng.randrange(len(parts) + 1), planted)
    return " ".join(parts)


def _some(rng: random.Random, kinds: list[str], most: int = 4) -> list[str]:
    return rng.choices(kinds, k=rng.choice([0, 1, 1, 2, 3, most]))


def _text_doc(rng: random.Random) -> Doc:
    doc = Doc("text")
    doc.data = _prose(rng, doc, _some(rng, list(SECRETS)))
    return doc


def _json_doc(rng: random.Random) -> Doc:
    doc = Doc("json")
    model = rng.choice(MODELS)
    doc.decoys.append(model)
    messages = [
        {
            "role": rng.choice(["system", "user", "assistant"]),
            "content": _prose(rng, doc, _some(rng, list(SECRETS), 2)),
        }
        for _ in range(rng.randint(1, 4))
    ]
    body: dict[str, object] = {"model": model, "messages": messages, "temperature": 0.2}
    if rng.random() < 0.3:  # a secret as a whole JSON value
        fragment, needles = SECRETS[rng.choice(ONE_LINE)](rng)
        body["metadata"] = {"note": fragment, "trace": str(uuid.UUID(int=rng.getrandbits(128)))}
        doc.needles += needles
    if rng.random() < 0.3:  # tool arguments: JSON inside a JSON string, quotes escaped twice
        fragment, needles = SECRETS[rng.choice(ONE_LINE)](rng)
        arguments = json.dumps({"query": rng.choice(VOCABULARY), "credential": fragment})
        body["tools"] = [
            {"type": "function", "function": {"name": "lookup", "arguments": arguments}}
        ]
        doc.needles += needles
    doc.data = json.dumps(body, ensure_ascii=rng.random() < 0.5).encode()
    return doc


ORDINARY_PARAMS = [
    word
    for word in VOCABULARY
    if word.lower() not in CREDENTIAL_PARAMS and not is_secret_name(word, True)
]


def _query_doc(rng: random.Random) -> Doc:
    doc = Doc("query")
    params: list[str] = []
    for _ in range(rng.randint(2, 8)):
        name = rng.choice(ORDINARY_PARAMS)
        roll = rng.random()
        if roll < 0.4:
            decoy = rng.choice(
                [*MODELS, str(uuid.UUID(int=rng.getrandbits(128))), str(rng.randrange(10**6))]
            )
            doc.decoys.append(decoy)
            params.append(f"{name}={decoy}")
        elif roll < 0.6:  # a secret parameter, any case, any value
            secret_name = rng.choice(sorted(CREDENTIAL_PARAMS))
            secret_name = rng.choice([secret_name, secret_name.upper(), secret_name.title()])
            value = _rand(rng, ALNUM, rng.randint(10, 30))
            doc.needles.append(value)
            params.append(f"{secret_name}={value}")
        else:  # a secret shape under an ordinary name, encoded as clients encode
            kind = rng.choice(list(SECRETS))
            fragment, needles = SECRETS[kind](rng)
            doc.planted.append(kind)
            doc.needles += needles
            encoded = quote_plus(fragment) if rng.random() < 0.5 else quote(fragment, safe="")
            params.append(f"{name}={encoded}")
    doc.data = "&".join(params)
    return doc


SECRET_HEADER_VALUES: list[Callable[[random.Random], str]] = [
    lambda rng: "Bearer " + _rand(rng, ALNUM, 40),
    lambda rng: f"session={_rand(rng, ALNUM, 32)}; theme=dark",
    lambda rng: _rand(rng, ALNUM + "-_", 48),
]


def _headers_doc(rng: random.Random) -> Doc:
    doc = Doc("headers")
    headers: dict[str, str] = {}
    for name in rng.sample(["Content-Type", "User-Agent", "X-Request-Id", "Accept", "X-Model"], 3):
        decoy = _decoy(rng)
        doc.decoys.append(decoy)
        headers[name] = decoy
    for name in rng.sample([*sorted(CREDENTIAL_HEADERS), "x-internal-user"], rng.randint(1, 3)):
        value = rng.choice(SECRET_HEADER_VALUES)(rng)
        doc.needles.append(value)
        headers[rng.choice([name, name.upper(), name.title()])] = value
    for kind in _some(rng, ONE_LINE):
        fragment, needles = SECRETS[kind](rng)
        doc.planted.append(kind)
        doc.needles += needles
        headers[f"X-Debug-{len(headers)}"] = rng.choice(["", "note: "]) + fragment
    doc.data = headers
    return doc


def _binary_doc(rng: random.Random) -> Doc:
    doc = Doc("binary")
    chunks = [rng.randbytes(rng.randint(0, 300))]
    for kind in _some(rng, list(SECRETS)):
        fragment, needles = SECRETS[kind](rng)
        doc.planted.append(kind)
        doc.needles += needles
        left, right = (
            rng.choice([b"\x00", b"\xff", b" ", b"\n", b"\x80\x81", b'"']),
            rng.choice([b"\x00", b"\xfe", b" ", b"\n"]),
        )
        chunks += [left + fragment.encode() + right, rng.randbytes(rng.randint(0, 300))]
    doc.data = b"".join(chunks)
    return doc


BUILDERS = [
    (_text_doc, 0.3),
    (_json_doc, 0.3),
    (_query_doc, 0.15),
    (_headers_doc, 0.15),
    (_binary_doc, 0.1),
]
CORPUS_CONFIG = RedactionConfig(headers=("x-internal-user",))


@cache
def corpus() -> tuple[Doc, ...]:
    """2,000 seeded documents, each redacted once by a Redactor with default scrubbers."""
    rng = random.Random(1234)
    builders = [b for b, _ in BUILDERS]
    weights = [w for _, w in BUILDERS]
    redactor = Redactor(CORPUS_CONFIG)
    docs = tuple(rng.choices(builders, weights)[0](rng) for _ in range(2_000))
    for doc in docs:
        if doc.kind == "text":
            assert isinstance(doc.data, str)
            doc.output = redactor.text(doc.data)
        elif doc.kind == "json":
            assert isinstance(doc.data, bytes)
            doc.output = redactor.body(doc.data, "application/json")
        elif doc.kind == "query":
            assert isinstance(doc.data, str)
            doc.output = redactor.query(doc.data)
        elif doc.kind == "headers":
            assert isinstance(doc.data, dict)
            doc.output = redactor.headers(doc.data)
        else:
            assert isinstance(doc.data, bytes)
            doc.output = redactor.body(doc.data, "application/octet-stream")
    return docs


def _output_text(doc: Doc) -> str:
    if isinstance(doc.output, dict):
        return "\n".join(f"{k}: {v}" for k, v in doc.output.items())
    if isinstance(doc.output, bytes):
        return doc.output.decode("utf-8", "surrogateescape")
    assert isinstance(doc.output, str)
    return doc.output


def test_corpus_plants_every_kind_of_secret_in_every_carrier() -> None:
    """The seeded corpus really does exercise each scrubber, in text, JSON, queries and binary."""
    planted = Counter((doc.kind, kind) for doc in corpus() for kind in doc.planted)
    for carrier in ("text", "json", "query", "binary"):
        for kind in SECRETS:
            assert planted[carrier, kind] >= 3, (carrier, kind)
    for kind in ONE_LINE:
        assert planted["headers", kind] >= 3, kind
    assert sum(len(doc.needles) for doc in corpus()) > 5_000


def test_no_planted_secret_survives_in_any_output() -> None:
    """Every planted secret is gone from every output, in every encoding it was planted in."""
    survivors = []
    for doc in corpus():
        if isinstance(doc.output, bytes):
            haystack = doc.output
            found = [n for n in doc.needles if n.encode() in haystack]
        else:
            text = _output_text(doc)
            forms = {n: (n, quote(n, safe=""), quote_plus(n)) for n in doc.needles}
            found = [n for n, spelled in forms.items() if any(s in text for s in spelled)]
        survivors += [(doc.kind, needle) for needle in found]
    assert survivors == []


def test_json_outputs_still_parse_as_json() -> None:
    """Redacting inside JSON strings (after escapes, inside escaped JSON) keeps the body valid."""
    for doc in corpus():
        if doc.kind == "json":
            assert isinstance(doc.output, bytes)
            json.loads(doc.output)


def test_ordinary_tokens_survive_beside_the_secrets() -> None:
    """Ids, timestamps, UUIDs, hashes, floats and model names next to secrets are untouched."""
    lost = [
        (doc.kind, decoy)
        for doc in corpus()
        for decoy in doc.decoys
        if decoy not in _output_text(doc)
    ]
    assert lost == []


def test_documents_without_secrets_are_unchanged() -> None:
    """A document with nothing planted comes out exactly as it went in."""
    clean = [doc for doc in corpus() if not doc.needles]
    assert len(clean) > 100
    for doc in clean:
        assert doc.output == doc.data, doc.kind
