"""Redaction by meaning: secret names, checksummed personal data, and the look-alikes kept."""

from __future__ import annotations

import json

import pytest

from capture.names import is_secret_name
from capture.redact import Redactor
from shadow.config import RedactionConfig

R = "[REDACTED]"

SECRET_NAMES = [
    "password", "PASSWORD", "userPassword", "db_passwd", "pwd", "pass", "Passphrase",
    "client_secret", "clientSecret", "client-secret", "Client Secret", "apiKey", "API_KEY",
    "x-api-key", "accessKey", "private_key", "token", "accessToken", "refresh-token",
    "authorization", "auth", "authToken", "credentials", "session", "sessionId",
    "X-Session-Id", "cookie", "signature", "aws_secret_access_key", "access_key_id",
]  # fmt: skip
ORDINARY_NAMES = [
    "author", "authority", "max_tokens", "prompt_tokens", "tokenizer", "token_count",
    "password_min_length", "session_timeout", "auth_url", "token_ids", "keyboard", "monkey",
    "key", "keys", "x-ratelimit-remaining-tokens", "content-type", "model", "secretary_name",
]  # fmt: skip


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secret_names_in_any_case_and_separator_style(name: str) -> None:
    """Passwords, secrets, tokens, keys, credentials, sessions, auth: any spelling."""
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ORDINARY_NAMES)
def test_names_that_describe_or_only_resemble_a_secret_are_not(name: str) -> None:
    """Counts, limits, URLs and look-alike words; a bare "key" only in headers and params."""
    assert not is_secret_name(name)


def test_a_bare_key_counts_in_headers_and_parameters() -> None:
    """``?key=`` and ``Ocp-Apim-Subscription-Key`` are credentials; ``"key"`` in JSON is not."""
    redactor = Redactor()
    assert redactor.query("key=abc&sort=asc") == f"key={R}&sort=asc"
    out = redactor.headers({"Ocp-Apim-Subscription-Key": "k1", "X-Auth-Token": "t", "A": "b"})
    assert out == {"ocp-apim-subscription-key": R, "x-auth-token": R, "a": "b"}
    assert redactor.body(b'{"key": "sort-order"}') == b'{"key": "sort-order"}'


def test_json_values_under_secret_names_at_any_depth() -> None:
    """Strings and numbers go, in nested objects, lists and JSON inside a JSON string."""
    inner = json.dumps({"apiKey": "abc123"})
    body = {"a": [{"b": {"Password": "p", "pin": 1234, "ok": 1}}], "args": inner}
    out = json.loads(Redactor().body(json.dumps(body).encode(), "application/json"))
    assert out == {
        "a": [{"b": {"Password": R, "pin": R, "ok": 1}}],
        "args": '{"apiKey": "[REDACTED]"}',
    }


def test_containers_under_secret_names_lose_their_values_not_their_keys() -> None:
    """``"credentials": {...}``: every value inside is replaced; a JSON Schema is kept."""
    body = {"credentials": {"user": "bob", "codes": [1, 2], "on": True}, "n": 1}
    out = json.loads(Redactor().body(json.dumps(body).encode(), "application/json"))
    assert out == {"credentials": {"user": R, "codes": [R, R], "on": True}, "n": 1}
    schema = {"properties": {"password": {"type": "string"}}}
    assert Redactor().body(json.dumps(schema).encode()) == json.dumps(schema).encode()


TEXT = [
    ("env file", "DB_PASSWORD=hunter2x\nDEBUG=1", f"DB_PASSWORD={R}\nDEBUG=1"),
    ("yaml", "password: 'correct horse'", f"password: '{R}'"),
    ("url query in text", "GET /x?token=abc&n=2", f"GET /x?token={R}&n=2"),
    ("scheme kept", "Authorization: Bearer abcdefghij1234567890", f"Authorization: Bearer {R}"),
    (
        "basic",
        "curl -H 'Authorization: Basic dXNlcjpwYXNzd29yZA=='",
        f"curl -H 'Authorization: Basic {R}'",
    ),
    ("postgres", "postgres://app:s3cret@db:5432/x", f"postgres://{R}@db:5432/x"),
    ("redis no user", "redis://:pw@cache", f"redis://{R}@cache"),
    ("phone e164", "call +14155550123.", f"call {R}."),
    ("phone us", "or (415) 555-0123 / 415.555.0123", f"or {R} / {R}"),
    ("phone uk", "tel 020 7946 0958", f"tel {R}"),
    ("iban spaced", "IBAN DE89 3704 0044 0532 0130 00.", f"IBAN {R}."),
    ("iban compact", "GB82WEST12345698765432", R),
    ("ssn", "ssn 123-45-6789", f"ssn {R}"),
    ("card two spaces", "4111  1111  1111  1111", R),
    ("card odd groups", "411 11111 1111 1111", R),
]


@pytest.mark.parametrize(("text", "expected"), [t[1:] for t in TEXT], ids=[t[0] for t in TEXT])
def test_text_shapes(text: str, expected: str) -> None:
    """Assignments, schemes, passwords in URLs and checksummed personal data in text."""
    assert Redactor().text(text) == expected


KEPT = [
    "password: required",  # prose, not a value
    "the basic idea; Basic English",  # not base64 of user:password
    "https://example.com:8443/a and http://localhost:8080/x?page=2",  # no password
    "IBAN DE89 3704 0044 0532 0130 01",  # fails mod 97
    "666-12-3456 and 000-12-3456 and 900-12-3456 and 123-00-4567",  # never-issued SSNs
    "2025-01-15 10:30:00+00:00 and 1.2.3.4 and v10.2.33",
    "order 12345678 and 0.5 0.25 and 100 200 300",
    "(123) 555-0123 and 415-155-0123",  # area or exchange starting 0/1
    "uuid 550e8400-e29b-41d4-a716-446655440000 sha 9fceb02d0ae598e95dc970b74767f19372d61af8",
]


@pytest.mark.parametrize("text", KEPT)
def test_look_alikes_are_kept(text: str) -> None:
    """Checksums and number ranges keep ordinary numbers; prose after a name is prose."""
    assert Redactor().text(text) == text


def test_scrub_personal_switches_phones_ibans_and_ssns_off() -> None:
    """redaction.scrub_personal = false keeps them (cards and e-mails have their own switch)."""
    text = "+14155550123 GB82WEST12345698765432 123-45-6789"
    assert Redactor(RedactionConfig(scrub_personal=False)).text(text) == text
