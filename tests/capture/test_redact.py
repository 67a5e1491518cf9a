"""capture.redact, method by method: scrubbers, headers, queries, JSON paths, config, robustness."""

from __future__ import annotations

import base64
import json
import random
import string

import pytest

from capture.redact import Redactor
from shadow.config import RedactionConfig
from shadow.errors import ConfigError
from shadow.wire.credentials import CREDENTIAL_HEADERS, CREDENTIAL_PARAMS
from tests.capture.cards import luhn_complete

R = "[REDACTED]"
ALNUM = string.ascii_letters + string.digits
UPPER_DIGITS = string.ascii_uppercase + string.digits


# --- each scrubber ----------------------------------------------------------------------------

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM_BODY = (
    "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi\n"
    "Z1BjP5CE/Wm/Rr500P\n"
    "RK+Lh9x5eJPo5CAZ3/ANBE0sTK0ZsDGMak2m1g73VHqIxFTz0Ta1d9NAjwnLIjXj"
)

SCRUBBED = [
    ("openai", "key sk-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKL end", f"key {R} end"),
    ("openai project", "sk-proj-Ab3_dEf-GhIjKlMnOpQrStUvWxYz0123456789", R),
    ("openai service account", "use sk-svcacct-0123456789abcdefghijKLMN!", f"use {R}!"),
    ("anthropic", "x-key: sk-ant-api03-" + "a1B2" * 23 + "AA", f"x-key: {R}"),
    ("aws key id", "id=AKIAIOSFODNN7EXAMPLE,", f"id={R},"),
    ("aws temporary key id", "(ASIAY34FZKBOKMUTVV7A)", f"({R})"),
    (
        "aws secret, env",
        "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        f"AWS_SECRET_ACCESS_KEY={R}",
    ),
    (
        "aws secret, ini",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
        f"aws_secret_access_key = {R}\n",
    ),
    (
        "aws secret, json",
        '{"aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}',
        f'{{"aws_secret_access_key": "{R}"}}',
    ),
    ("github classic", "token ghp_" + "A1b2C3d4E5" * 3 + "f6G7h8", f"token {R}"),
    ("github app", "ghs_" + "x" * 36 + " and gho_" + "Y" * 36, f"{R} and {R}"),
    ("github fine-grained", "github_pat_11ABCDEFG0123456789_" + "abcdefghij" * 6, R),
    ("slack", "xoxb-12345678901-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx.", f"{R}."),
    ("google", "key=AIzaSyA-1234567890_abcdefghijklmnopqrst&x=1", f"key={R}&x=1"),
    ("hugging face", "HF: hf_abcdefghijklmnopqrstuvwxyzABCDEFGH", f"HF: {R}"),
    ("gitlab", "glpat-xxxxxxxxxxxxxxxxxxxx", R),
    ("stripe live", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", R),
    ("stripe restricted", "rk_live_4eC39HqLyjWDarjtT1zdp7dc", R),
    ("stripe test", "sk_test_4eC39HqLyjWDarjtT1zdp7dc", R),
    ("jwt", f"token: {JWT}", f"token: {R}"),
    (
        "bearer keeps the word",
        "Authorization: Bearer abc.def-123_456~789+xyz/==",
        f"Authorization: Bearer {R}",
    ),
    ("bearer lower case, long token", "bearer abcdefghijklmnopqrstuvwxyz", f"bearer {R}"),
    ("bearer with a jwt", f"Bearer {JWT}", f"Bearer {R}"),
    (
        "pem",
        f"k = -----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY----- ok",
        f"k = {R} ok",
    ),
    (
        "pem openssh",
        f"-----BEGIN OPENSSH PRIVATE KEY-----\n{PEM_BODY}\n-----END OPENSSH PRIVATE KEY-----",
        R,
    ),
    (
        "pem pgp",
        f"-----BEGIN PGP PRIVATE KEY BLOCK-----\n{PEM_BODY}\n-----END PGP PRIVATE KEY BLOCK-----",
        R,
    ),
    ("pem cut off", f"-----BEGIN PRIVATE KEY-----\n{PEM_BODY}", R),
    ("email", "mail john.doe+tag@example.co.uk, thanks", f"mail {R}, thanks"),
    ("email in angle brackets", "From: Jane <jane_d@mail.example.org>", f"From: Jane <{R}>"),
    ("visa plain", "card 4111111111111111 exp 12/27", f"card {R} exp 12/27"),
    ("visa spaced", "card 4111 1111 1111 1111.", f"card {R}."),
    ("mastercard dashed", "5555-5555-5555-4444", R),
    ("mastercard 2-series", "2223003122003222", R),
    ("amex 4-6-5", "amex 3782 822463 10005 ok", f"amex {R} ok"),
    ("diners 4-6-4", "3056 930902 5904", R),
    ("discover", "6011111111111117", R),
    ("visa 13 digits", "4222222222222", R),
    ("card then its cvv", "4111 1111 1111 1111 123", f"{R} 123"),
    ("card after a number", "qty 12 4111 1111 1111 1111", f"qty 12 {R}"),
    ("card after a lone backslash", "dir\\4111111111111111", f"dir\\{R}"),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in SCRUBBED], ids=[c[0] for c in SCRUBBED]
)
def test_each_scrubber_replaces_its_secret(text: str, expected: str) -> None:
    """Each secret shape is replaced, and only the secret: its surroundings are kept."""
    assert Redactor().text(text) == expected


def _luhn_valid(first: str) -> str:
    return luhn_complete(first, 16, random.Random(5))


KEPT = [
    "gpt-4o-mini and gpt-4o-2024-08-06",
    "claude-3-5-sonnet-20241022",
    "sk is a word; task-123 is a ticket; sk-learn is a library",
    "disk-abcdefghijklmnopqrstuvwxyz12",  # glued onto a word: not a key
    "xsk-proj-abcdefghijklmnopqrstuvwxyz0123",
    "the bearer of bad news; bearer instrument. Bearer abc",
    "AKIA is a prefix, AKIAIOSFODNN7EXAMPLEX is too long",
    "ts 1700000000123 and 1734567890123456789 and 1700000000",
    "id 4111111111111112 fails Luhn",
    f"{_luhn_valid('7')} and {_luhn_valid('1')} are outside the card industries",
    "0.41111111111111111 and -0.4111111111111111",
    "commit a4111111111111111b2c3d and sha 3f4111111111111111",
    "550e8400-e29b-41d4-a716-446655440000",
    "12345678-1234-1234-1234-123456789012",
    "2024-01-15T10:30:00.123456789Z",
    "10.0.0.1, v1.2.3, $12.50, 1.5e-10, 3.14159",
    "100 200 300 400 500 600 700",
    "@decorator and user@localhost and a @ b.com",
    "clearer, nearer, swearer",
    "eyJ alone is not a token; a.eyJb is not either",
    "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
]


@pytest.mark.parametrize("text", KEPT)
def test_ordinary_text_is_kept(text: str) -> None:
    """Model names, ids, timestamps, UUIDs, floats and look-alike words are not redacted."""
    redactor = Redactor()
    assert redactor.text(text) == text
    assert redactor.body(text.encode()) == text.encode()


def test_luhn_valid_numbers_outside_card_industries_are_a_documented_keep() -> None:
    """The trade-off: a Luhn-valid 16-digit number starting with 2-6 is a card, with 7 it is not."""
    redactor = Redactor()
    assert redactor.text(_luhn_valid("4")) == R
    assert redactor.text(_luhn_valid("7")) == _luhn_valid("7")


def test_secrets_after_json_escapes_are_found_and_json_stays_valid() -> None:
    """Secrets after \\n, \\t or \\u2014 inside a JSON string are replaced; the JSON parses."""
    key = "sk-proj-abcdefghijklmnopqrstuvwxyz012345"
    text = f"a\n{key}\n\u2014AKIAIOSFODNN7EXAMPLE\tjohn@x.io\n\u20144111111111111111\\{key}"
    for ascii_only in (True, False):
        body = json.dumps({"content": text}, ensure_ascii=ascii_only).encode()
        out = json.loads(Redactor().body(body, "application/json"))
        assert out == {"content": f"a\n{R}\n\u2014{R}\t{R}\n\u2014{R}\\{R}"}


def test_escaped_json_inside_json_stays_valid() -> None:
    """Tool-call arguments (JSON in a JSON string, quotes escaped twice) stay parseable."""
    arguments = json.dumps({"email": "a.b@example.com", "key": "ghp_" + "a" * 36})
    body = json.dumps({"tool_calls": [{"function": {"arguments": arguments}}]}).encode()
    out = json.loads(Redactor().body(body, "application/json"))
    assert json.loads(out["tool_calls"][0]["function"]["arguments"]) == {"email": R, "key": R}


def test_pem_inside_a_json_string_is_replaced_whole() -> None:
    """A key with \\n escapes is replaced to its END line, or (cut off) to the string's end."""
    block = f"-----BEGIN EC PRIVATE KEY-----\n{PEM_BODY}\n-----END EC PRIVATE KEY-----"
    body = json.dumps(
        {"a": f"key:\n{block}\nbye", "b": '-----BEGIN PRIVATE KEY-----\nMIIE\\x"q', "c": 1}
    ).encode()
    out = json.loads(Redactor().body(body))
    assert out == {"a": f"key:\n{R}\nbye", "b": R, "c": 1}


# --- headers ----------------------------------------------------------------------------------


def test_secret_headers_are_replaced_whatever_their_case() -> None:
    """Authorization, Cookie, X-Api-Key ... are replaced; names come out lower-cased."""
    headers = {
        "AUTHORIZATION": "Basic dXNlcjpwYXNz",
        "Proxy-Authorization": "Bearer x",
        "cookie": "a=b",
        "Set-Cookie": "sid=1; HttpOnly",
        "X-API-Key": "k",
        "Api-Key": "k",
        "X-Goog-Api-Key": "k",
        "Content-Type": "application/json",
        "OpenAI-Organization": "org-abc123",
    }
    out = Redactor().headers(headers)
    assert out == {
        "authorization": R,
        "proxy-authorization": R,
        "cookie": R,
        "set-cookie": R,
        "x-api-key": R,
        "api-key": R,
        "x-goog-api-key": R,
        "content-type": "application/json",
        "openai-organization": "org-abc123",
    }


def test_configured_extra_headers_are_replaced() -> None:
    """redaction.headers adds names, matched in any case."""
    redactor = Redactor(RedactionConfig(headers=("X-Internal-User",)))
    assert redactor.headers({"x-internal-user": "alice", "X-Other": "bob"}) == {
        "x-internal-user": R,
        "x-other": "bob",
    }


def test_other_header_values_are_scrubbed() -> None:
    """A key shape or an e-mail address in an ordinary header's value is replaced."""
    out = Redactor().headers(
        {"X-Debug": "using sk-abcdefghijklmnopqrstuvwxyz0123", "X-User": "a@b.io"}
    )
    assert out == {"x-debug": f"using {R}", "x-user": R}


def test_header_names_that_differ_in_case_are_joined() -> None:
    """Two spellings of one name become one lower-case header, values joined with ', '."""
    assert Redactor().headers({"Accept": "a", "accept": "b"}) == {"accept": "a, b"}


def test_headers_with_nul_in_a_value_are_still_scrubbed() -> None:
    """A NUL inside a value (never valid HTTP) falls back to one value at a time."""
    out = Redactor().headers({"a": "x\x00AKIAIOSFODNN7EXAMPLE", "b": "c@d.io"})
    assert out == {"a": f"x\x00{R}", "b": R}


# --- query strings and form bodies -------------------------------------------------------------


def test_secret_query_parameters_are_replaced_in_any_case() -> None:
    """Every listed parameter, in any case, has its value replaced; the rest is kept as sent."""
    for name in sorted(CREDENTIAL_PARAMS):
        for spelled in (name, name.upper()):
            query = f"model=gpt-4o&{spelled}=s3cr3t-value&stream=true"
            assert Redactor().query(query) == f"model=gpt-4o&{spelled}={R}&stream=true"


def test_query_values_are_scrubbed_as_decoded() -> None:
    """A percent- or plus-encoded e-mail, card or bearer token is found and replaced."""
    redactor = Redactor()
    assert redactor.query("to=john%40example.com&n=1") == f"to={R}&n=1"
    assert redactor.query("c=4111+1111+1111+1111&x=a+b") == f"c={R}&x=a+b"
    assert redactor.query("h=Bearer%20abc123def456ghi789") == f"h=Bearer%20{R}"
    assert redactor.query("k=AKIAIOSFODNN7EXAMPLE") == f"k={R}"


def test_query_edge_cases_are_kept() -> None:
    """Empty values, bare names, an encoded secret name and odd separators are handled."""
    redactor = Redactor()
    assert redactor.query("") == ""
    assert redactor.query("token=&key&a=1") == "token=&key&a=1"
    assert redactor.query("api%5Fkey=x&a=%zz") == f"api%5Fkey={R}&a=%zz"
    assert redactor.query("q=hello+world&r=caf%C3%A9") == "q=hello+world&r=caf%C3%A9"


def test_form_bodies_are_redacted_like_queries() -> None:
    """application/x-www-form-urlencoded bodies get the query rules: passwords are replaced."""
    body = b"username=ann&password=hunter2&email=ann%40example.com"
    out = Redactor().body(body, "application/x-www-form-urlencoded; charset=utf-8")
    assert out == f"username=ann&password={R}&email={R}".encode()


# --- json paths ---------------------------------------------------------------------------------


def _paths(*paths: str) -> Redactor:
    return Redactor(RedactionConfig(json_paths=paths))


def test_json_paths_replace_nested_values() -> None:
    """$.user.email and $.metadata.api_key are replaced, whatever their type; the rest is kept."""
    body = json.dumps({"user": {"email": "x", "id": 7}, "metadata": {"api_key": {"v": 1}}, "n": 2})
    out = _paths("$.user.email", "$.metadata.api_key").body(body.encode(), "application/json")
    assert json.loads(out) == {"user": {"email": R, "id": 7}, "metadata": {"api_key": R}, "n": 2}


def test_json_paths_fan_out_over_lists() -> None:
    """A path segment that meets a list applies to every element, lists of lists included."""
    body = {"messages": [{"role": "user", "content": "a"}, {"role": "x"}, [{"content": "b"}], 3]}
    out = _paths("$.messages.content").body(json.dumps(body).encode())
    assert json.loads(out) == {
        "messages": [{"role": "user", "content": R}, {"role": "x"}, [{"content": R}], 3]
    }
    batch = json.dumps([{"user": {"email": "a"}}, {"user": {"email": "b"}}]).encode()
    assert json.loads(_paths("$.user.email").body(batch)) == [{"user": {"email": R}}] * 2


def test_json_paths_that_match_nothing_leave_the_bytes_alone() -> None:
    """No re-encoding when nothing matched: whitespace and key order are as sent."""
    body = b'{ "b": 1,\n  "a": {"c": [1, 2]} }'
    assert _paths("$.a.x", "$.b.c", "$.z").body(body, "application/json") == body


def test_json_paths_need_json() -> None:
    """Paths apply to JSON content types or bodies that start like JSON and parse."""
    redactor = _paths("$.a")
    assert json.loads(redactor.body(b' {"a": 1}')) == {"a": R}
    assert redactor.body(b"a=1", "text/plain") == b"a=1"
    assert redactor.body(b'{"a": 1', "application/json") == b'{"a": 1'  # cut off: scrub only


def test_bad_json_path_is_a_config_error() -> None:
    """A json_path that is not a dotted $ path names the key, the value and the fix."""
    with pytest.raises(ConfigError) as info:
        _paths("user.email")
    assert str(info.value) == (
        "redaction.json_paths has value 'user.email'; use a dotted path such as '$.user.email'"
    )


# --- config -----------------------------------------------------------------------------------


@pytest.mark.parametrize("replacement", ['"x"', "a\\b", "new\nline", "nul\x00", "tab\t"])
def test_replacement_that_would_break_json_is_a_config_error(replacement: str) -> None:
    """Quotes, backslashes and control characters in the replacement are refused up front."""
    with pytest.raises(ConfigError) as info:
        Redactor(RedactionConfig(replacement=replacement))
    assert str(info.value) == (
        f"redaction.replacement has value {replacement!r}; "
        "it must not contain quotes, backslashes or control characters"
    )


def test_custom_replacement_is_used_everywhere() -> None:
    """The configured replacement appears in bodies, headers and queries (encoded there)."""
    redactor = Redactor(RedactionConfig(replacement="<gone>"))
    assert redactor.text("a@b.io") == "<gone>"
    assert redactor.body(b"x a@b.io") == b"x <gone>"
    assert redactor.headers({"Cookie": "a"}) == {"cookie": "<gone>"}
    assert redactor.query("token=a&to=a@b.io") == "token=%3Cgone%3E&to=%3Cgone%3E"


def test_custom_patterns_are_scrubbed_everywhere() -> None:
    """redaction.patterns apply to bodies, text, header values and queries."""
    redactor = Redactor(RedactionConfig(patterns=(r"\bACCT-[0-9]{8}\b",)))
    assert redactor.text("acct ACCT-12345678.") == f"acct {R}."
    assert redactor.body(b"\xffACCT-12345678\xfe") == b"\xff" + R.encode() + b"\xfe"
    assert redactor.headers({"X-A": "ACCT-12345678", "X-B": "ACCT-1"}) == {
        "x-a": R,
        "x-b": "ACCT-1",
    }
    assert redactor.query("a=ACCT-12345678") == f"a={R}"


def test_custom_pattern_that_matches_nothing_inserts_nothing() -> None:
    """A pattern that can match the empty string does not sprinkle replacements."""
    redactor = Redactor(RedactionConfig(patterns=("x*",)))
    assert redactor.text("abxxc") == f"ab{R}c"


def test_scrubbers_can_be_turned_off() -> None:
    """scrub_emails, scrub_cards and scrub_tokens each switch one family off."""
    text = "a@b.io 4111111111111111 AKIAIOSFODNN7EXAMPLE"
    assert Redactor(RedactionConfig(scrub_emails=False)).text(text) == f"a@b.io {R} {R}"
    assert Redactor(RedactionConfig(scrub_cards=False)).text(text) == f"{R} 4111111111111111 {R}"
    assert (
        Redactor(RedactionConfig(scrub_tokens=False)).text(text) == f"{R} {R} AKIAIOSFODNN7EXAMPLE"
    )
    off = Redactor(RedactionConfig(scrub_emails=False, scrub_cards=False, scrub_tokens=False))
    assert off.text(text) == text
    assert off.headers({"Authorization": "x"}) == {"authorization": R}
    assert off.query("token=x") == f"token={R}"


def test_default_secret_lists() -> None:
    """The documented defaults: organisation ids are not secrets, credentials are."""
    assert "openai-organization" not in CREDENTIAL_HEADERS
    assert {"authorization", "cookie", "set-cookie", "x-api-key", "api-key"} <= CREDENTIAL_HEADERS
    assert {"api_key", "apikey", "key", "token", "sig", "signature", "code"} <= CREDENTIAL_PARAMS


# --- robustness -------------------------------------------------------------------------------


def test_body_never_raises_on_malformed_input() -> None:
    """Random bytes, cut-off JSON, invalid UTF-8 and absurd nesting all come back as bytes."""
    rng = random.Random(99)
    redactor = Redactor(RedactionConfig(json_paths=("$.a.b",), patterns=("z+",)))
    samples = [
        b"[" * 100_000,
        b"[" * 5_000 + b"]" * 5_000,
        b'{"a": "\xff"}',
        b'"\\ud800"',
        b"{" + b"\\" * 9,
    ]
    fragments = [
        b'{"a": {"b": ',
        b"[",
        b'"',
        b"\\u12",
        b"\\",
        b"}",
        b"\xc3",
        b"\xed\xa0\x80",
        b"-----BEGIN PRIVATE KEY-----",
        b"@",
        b"4111 1111 ",
    ]
    for _ in range(300):
        samples.append(
            b"".join(rng.choice(fragments) + rng.randbytes(rng.randint(0, 20)) for _ in range(8))
        )
    for data in samples:
        for content_type in ("application/json", "", "application/x-www-form-urlencoded"):
            assert isinstance(redactor.body(data, content_type), bytes)


def test_text_with_lone_surrogates_round_trips() -> None:
    """A str that is not valid Unicode is scrubbed without raising and keeps its odd parts."""
    assert Redactor().text("\ud800 a@b.io \udcff") == f"\ud800 {R} \udcff"


def test_base64_data_uris_are_skipped_but_their_surroundings_scrubbed() -> None:
    """An image payload passes through untouched; text next to it is still scrubbed."""
    payload = base64.b64encode(random.Random(1).randbytes(90_000)).decode()
    body = {
        "messages": [
            {"content": [{"type": "text", "text": "my key sk-abcdefghijklmnopqrstuvwxyz0123"}]},
            {
                "content": [
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{payload}"}}
                ]
            },
            {"content": "data:text/plain;base64,not base64 at all a@b.io"},
        ]
    }
    out = json.loads(Redactor().body(json.dumps(body).encode()))
    assert out["messages"][0]["content"][0]["text"] == f"my key {R}"
    assert (
        out["messages"][1]["content"][0]["image_url"]["url"] == f"data:image/png;base64,{payload}"
    )
    assert out["messages"][2]["content"] == f"data:text/plain;base64,not base64 at all {R}"
