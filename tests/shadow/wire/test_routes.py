"""The route allow-list: ``METHOD /path`` patterns matched on normalised paths."""

from __future__ import annotations

import pytest

from shadow.wire.credentials import auth_header, looks_like_credential
from shadow.wire.routes import DEFAULT_ALLOW, RouteAllowList, RouteError, api_of

DEFAULT = RouteAllowList()


@pytest.mark.parametrize(
    ("raw", "sent"),
    [
        ("/v1/chat/completions", "/v1/chat/completions"),
        ("//v1///chat//completions", "/v1/chat/completions"),
        ("/v1/./chat/completions/.", "/v1/chat/completions"),
        ("/v1/chat/completions/", "/v1/chat/completions"),
        ("/v1/chat%2fcompletions", "/v1/chat/completions"),
        ("/v1/chat%2Fcompletions", "/v1/chat/completions"),
        ("/v1/%2e/chat/completions", "/v1/chat/completions"),
        ("/other/../v1/chat/completions", "/v1/chat/completions"),
        ("/v1/other/../chat/completions", "/v1/chat/completions"),
        ("/openai/deployments/gpt-4o/chat/completions", None),
        ("/v1beta/models/gemini-2.5-pro:streamGenerateContent", None),
        ("/v1/messages", None),
    ],
)
def test_allowed_paths_are_sent_normalised(raw: str, sent: str | None) -> None:
    """What a route admits goes to its normalised path, never the captured one."""
    verdict = DEFAULT.check("POST", raw)
    assert verdict.allowed
    assert verdict.reason is None
    assert verdict.path == (sent or raw)


@pytest.mark.parametrize(
    ("method", "raw", "reason"),
    [
        ("GET", "/v1/chat/completions", "skipped_method"),
        ("DELETE", "/v1/chat/completions", "skipped_method"),
        ("post", "/v1/chat/completions", "skipped_method"),
        ("DELETE", "/v1/chat/completions/chatcmpl-1", "skipped_path"),
        ("POST", "/v1/chat/completions/chatcmpl-1", "skipped_path"),
        ("POST", "/v1/responses/resp_1/cancel", "skipped_path"),
        ("POST", "/v1/embeddingsadmin", "skipped_path"),
        ("POST", "/v1/files", "skipped_path"),
        ("POST", "v1/chat/completions", "skipped_path"),
        ("POST", "/v1/chat/completions%252e%252e", "skipped_path"),  # double encoding
        ("POST", "/v1/chat%5ccompletions", "skipped_path"),  # a backslash
        ("POST", "/v1/chat/completions;x=1", "skipped_path"),
        ("POST", "/v1/chat/completions%3Fx=1", "skipped_path"),
        ("POST", "/v1/chat/compl\u00e9tions", "skipped_path"),
        ("POST", "/openai/deployments/a/b/chat/completions", "skipped_path"),  # not one segment
        ("POST", "/v1beta/models/a/b:generateContent", "skipped_path"),
        ("POST", "/v1/chat/completions/../../files", "skipped_path_escape"),
        ("POST", "/v1/chat/completions/%2e%2e/%2e%2e/files", "skipped_path_escape"),
        ("POST", "/v1/chat/completions/%2E%2E%2F%2E%2E%2Ffiles", "skipped_path_escape"),
        ("POST", "/v1/chat/completions/.%2E/.%2e/files", "skipped_path_escape"),
        ("POST", "/v1/embeddings/../chat/completions", "skipped_path_escape"),
        ("POST", "/openai/deployments/a/../b/chat/completions", "skipped_path_escape"),
        ("POST", "/../v1/chat/completions", "skipped_path_escape"),
        ("POST", "/%2e%2e/v1/chat/completions", "skipped_path_escape"),
    ],
)
def test_everything_else_is_refused_with_its_reason(method: str, raw: str, reason: str) -> None:
    """Wrong method, unknown or malformed path, or a ``..`` that escapes: never sent."""
    verdict = DEFAULT.check(method, raw)
    assert not verdict.allowed
    assert verdict.reason == reason


def test_the_default_is_post_to_each_apis_inference_endpoints() -> None:
    """One POST route per inference endpoint; every route is exact (no prefix, no wildcard)."""
    assert DEFAULT.patterns == DEFAULT_ALLOW
    assert {r.method for r in DEFAULT.routes} == {"POST"}
    assert {r.api for r in DEFAULT.routes} == {"openai", "azure", "anthropic", "gemini"}


def test_a_placeholder_matches_one_segment_or_part_of_one() -> None:
    """``{name}`` never spans ``/``, and a literal around it must match."""
    allow = RouteAllowList(["POST /v2/{tenant}/generate", "PUT /v2/items/{id}.json"])
    assert allow.check("POST", "/v2/acme/generate").allowed
    assert not allow.check("POST", "/v2/acme/x/generate").allowed
    assert not allow.check("POST", "/v2//generate").allowed  # empty segments collapse away
    assert allow.check("PUT", "/v2/items/7.json").allowed
    assert not allow.check("PUT", "/v2/items/7.xml").allowed


@pytest.mark.parametrize(
    "pattern",
    [
        "/v1/chat/completions",
        "post /v1/chat/completions",
        "POST v1/chat/completions",
        "POST /",
        "POST /v1//chat",
        "POST /v1/../files",
        "POST /v1/chat/",
        "POST /v1/{bad-name}",
        "POST /v1/a b",
        "POST /v1/%2e",
    ],
)
def test_malformed_patterns_are_refused(pattern: str) -> None:
    """A pattern is ``METHOD /path`` with plain segments and ``{name}`` placeholders."""
    with pytest.raises(RouteError):
        RouteAllowList([pattern])


def test_an_empty_allow_list_is_refused() -> None:
    """Nothing to replay is a mistake, not a way to replay everything."""
    with pytest.raises(RouteError, match="at least one route"):
        RouteAllowList([])


@pytest.mark.parametrize(
    ("path", "api"),
    [
        ("/v1/chat/completions", "openai"),
        ("/v1/responses", "openai"),
        ("/v1/messages", "anthropic"),
        ("/openai/deployments/{deployment}/chat/completions", "azure"),
        ("/v1beta/models/{model}:generateContent", "gemini"),
        ("/v1/models/gemini-pro:generateContent", "gemini"),
    ],
)
def test_the_api_of_a_path(path: str, api: str) -> None:
    """The API (hence the auth style) follows from the path."""
    assert api_of(path) == api


@pytest.mark.parametrize(
    "name",
    [
        "X-Auth-Token",
        "Ocp-Apim-Subscription-Key",
        "x-vendor-session",
        "X-Amz-Security-Token",
        "x-portkey-virtual-key",
        "X_API_KEY",
        "xApiSecret",
        "x-client-password",
        "x-signature",
        "set-cookie",
        "proxy-authorization",
        "x-credential",
    ],
)
def test_names_that_say_credential_are_recognised(name: str) -> None:
    """key, token, secret, auth, password, signature, session, cookie, credential: any case."""
    assert looks_like_credential(name)


@pytest.mark.parametrize(
    "name", ["x-request-source", "x-tenant", "content-type", "accept", "anthropic-version"]
)
def test_ordinary_names_are_not(name: str) -> None:
    assert not looks_like_credential(name)


def test_auth_headers_by_style() -> None:
    """Bearer goes in Authorization; the others are the header of that name."""
    assert auth_header("bearer", "k") == ("authorization", "Bearer k")
    assert auth_header("x-api-key", "k") == ("x-api-key", "k")
    assert auth_header("x-goog-api-key", "k") == ("x-goog-api-key", "k")
    assert auth_header("api-key", "k") == ("api-key", "k")
