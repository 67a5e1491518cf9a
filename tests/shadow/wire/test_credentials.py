"""One credential list: capture redacts every name on it and replay never sends any of them."""

from __future__ import annotations

from urllib.parse import parse_qsl

from capture.redact import Redactor
from shadow.config import ArmConfig
from shadow.replay.targets import build_request
from shadow.trace.record import HttpRequest, TraceRecord
from shadow.wire.credentials import ACCOUNT_HEADERS, CREDENTIAL_HEADERS, CREDENTIAL_PARAMS

R = "[REDACTED]"


def test_capture_redacts_every_credential_header_and_keeps_account_headers() -> None:
    """Each name of CREDENTIAL_HEADERS is redacted by capture; account headers are not secret."""
    headers = {name.title(): "abc123" for name in CREDENTIAL_HEADERS | ACCOUNT_HEADERS}
    redacted = Redactor().headers(headers)
    assert {name for name, value in redacted.items() if value == R} == CREDENTIAL_HEADERS
    assert {name: redacted[name] for name in ACCOUNT_HEADERS} == dict.fromkeys(
        ACCOUNT_HEADERS, "abc123"
    )


def test_capture_redacts_every_credential_parameter_in_any_case() -> None:
    """Each name of CREDENTIAL_PARAMS has its value replaced, whatever its case."""
    query = "&".join(f"{name.upper()}=v1" for name in sorted(CREDENTIAL_PARAMS)) + "&page=2"
    pairs = parse_qsl(Redactor().query(query))
    assert {name.lower() for name, value in pairs if value == R} == CREDENTIAL_PARAMS
    assert ("page", "2") in pairs


def test_replay_never_sends_a_credential_or_account_header() -> None:
    """Captured values that escaped redaction are never sent, even if pass_headers names them."""
    never = CREDENTIAL_HEADERS | ACCOUNT_HEADERS
    record = TraceRecord(
        trace_id="t",
        captured_at=1,
        request=HttpRequest(
            method="POST",
            path="/v1/chat/completions",
            headers={**dict.fromkeys(never, "not-redacted"), "x-tenant": "acme"},
            body='{"model": "m", "messages": []}',
        ),
    )
    arm = ArmConfig(url="http://127.0.0.1:9")
    request = build_request(record, arm, secret=None)
    assert never.isdisjoint(request.headers)
    assert "x-tenant" not in request.headers  # no captured header goes on unless passed
    passed = build_request(record, arm, secret=None, pass_headers=["x-tenant", *sorted(never)])
    assert never.isdisjoint(passed.headers)  # not even when a pass-through list names them
    assert passed.headers["x-tenant"] == "acme"
