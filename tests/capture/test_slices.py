"""capture.slices: slice labels from headers and JSON paths, defaults, conversions, limits."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

import capture.slices
from capture.slices import DEFAULT_SLICE_RULES, MAX_VALUE_CHARS, SliceExtractor
from shadow.config import SliceRule


def js(value: object) -> bytes:
    """JSON-encode a body."""
    return msgspec.json.encode(value)


BODY = js(
    {
        "model": "gpt-4o-mini",
        "metadata": {"intent": "code_review", "priority": 2, "beta": True, "score": 0.5},
        "messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "y"}],
    }
)


def test_defaults_read_tenant_intent_and_model() -> None:
    """With no rules: tenant from x-tenant, intent from $.metadata.intent, model from $.model."""
    extractor = SliceExtractor([])
    assert extractor.extract({"x-tenant": "acme"}, BODY) == {
        "tenant": "acme",
        "intent": "code_review",
        "model": "gpt-4o-mini",
    }
    assert [rule.name for rule in DEFAULT_SLICE_RULES] == ["tenant", "intent", "model"]


def test_absent_values_are_omitted_under_the_defaults() -> None:
    """A missing header or JSON key leaves its slice out when the default is empty."""
    assert SliceExtractor().extract({}, js({"model": "m"})) == {"model": "m"}


def test_configured_rules_replace_the_defaults() -> None:
    """Configured rules are the only ones applied, in their order, header names case-folded."""
    rules = [
        SliceRule(name="route", header="X-Route"),
        SliceRule(name="role", json_path="$.messages.1.role"),
        SliceRule(name="region", header="x-region", default="unknown"),
    ]
    slices = SliceExtractor(rules).extract({"x-route": "fast", "x-tenant": "acme"}, BODY)
    assert slices == {"route": "fast", "role": "user", "region": "unknown"}
    assert list(slices) == ["route", "role", "region"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$.metadata.priority", "2"),
        ("$.metadata.beta", "True"),
        ("$.metadata.score", "0.5"),
        ("$.metadata", None),  # an object is not a label
        ("$.messages", None),  # nor is a list
        ("$.metadata.missing", None),
        ("$.model.deeper", None),  # a path through a string
        ("$.messages.7.role", None),  # an index past the end
        ("$.messages.first", None),  # a name into a list
    ],
)
def test_json_values_are_converted_or_skipped(path: str, expected: str | None) -> None:
    """Numbers and booleans become str(); objects, lists and dead ends take the default."""
    with_default = SliceExtractor([SliceRule(name="s", json_path=path, default="-")])
    assert with_default.extract({}, BODY) == {"s": expected or "-"}
    without = SliceExtractor([SliceRule(name="s", json_path=path)])
    assert without.extract({}, BODY) == ({"s": expected} if expected else {})


def test_empty_and_null_values_count_as_absent() -> None:
    """An empty header, an empty string and JSON null take the default."""
    rules = [
        SliceRule(name="tenant", header="x-tenant", default="none"),
        SliceRule(name="intent", json_path="$.intent", default="chat"),
        SliceRule(name="user", json_path="$.user", default="anon"),
    ]
    slices = SliceExtractor(rules).extract({"x-tenant": ""}, js({"intent": "", "user": None}))
    assert slices == {"tenant": "none", "intent": "chat", "user": "anon"}


@pytest.mark.parametrize(
    "body", [b"", b"not json", b"\xff\xfe", b"[1, 2]", b'"text"', b"[" * 100_000]
)
def test_a_body_that_is_not_a_json_object_gives_json_defaults(body: bytes) -> None:
    """Non-JSON or non-object bodies never raise; JSON rules fall back, header rules still work."""
    rules = [
        SliceRule(name="tenant", header="x-tenant"),
        SliceRule(name="intent", json_path="$.metadata.intent", default="unknown"),
        SliceRule(name="model", json_path="$.model"),
    ]
    assert SliceExtractor(rules).extract({"x-tenant": "acme"}, body) == {
        "tenant": "acme",
        "intent": "unknown",
    }


def test_values_are_cut_to_the_limit() -> None:
    """Header values, JSON strings and defaults are cut to MAX_VALUE_CHARS characters."""
    long = "é" * (MAX_VALUE_CHARS + 50)
    rules = [
        SliceRule(name="h", header="x-h"),
        SliceRule(name="j", json_path="$.j"),
        SliceRule(name="d", header="x-missing", default=long),
    ]
    slices = SliceExtractor(rules).extract({"x-h": long}, js({"j": long}))
    assert slices == dict.fromkeys(("h", "j", "d"), long[:MAX_VALUE_CHARS])


class CountingDecoder:
    """Stands in for the module's JSON decoder and counts the calls."""

    def __init__(self) -> None:
        self.calls = 0

    def decode(self, data: bytes) -> Any:
        self.calls += 1
        return msgspec.json.decode(data)


def test_the_body_is_parsed_once_and_only_when_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Several JSON rules share one parse; header-only rules never parse the body."""
    decoder = CountingDecoder()
    monkeypatch.setattr(capture.slices, "_DECODER", decoder)
    json_rules = SliceExtractor(
        [SliceRule(name=n, json_path=f"$.metadata.{n}") for n in ("intent", "priority", "beta")]
    )
    assert json_rules.extract({}, BODY) == {
        "intent": "code_review",
        "priority": "2",
        "beta": "True",
    }
    assert decoder.calls == 1
    headers_only = SliceExtractor([SliceRule(name="tenant", header="x-tenant")])
    assert headers_only.extract({"x-tenant": "acme"}, BODY) == {"tenant": "acme"}
    assert decoder.calls == 1
