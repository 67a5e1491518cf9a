"""Replay and mirror send no captured credential: the headers that reach a real local server.

Each arm's headers are built from an allow-list (content type, accept, the API's protocol
headers, ``replay.pass_headers``, the arm's ``headers`` and its key from ``api_key_env`` in the
API's auth style), never from the captured set.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shadow.config import ArmConfig, ReplayConfig
from shadow.replay.jobs import MirrorJob, ReplayJob, run_mirror, run_replay
from shadow.replay.plan import Pacing
from shadow.replay.pricing import DEFAULT_PRICES, PricingTable
from shadow.replay.targets import build_request
from shadow.trace.jsonl import write_jsonl
from shadow.trace.record import HttpRequest, TraceRecord
from tests.shadow.replay.recorder import Arrival, RecordingServer

T0 = 1_700_000_000_000_000_000

CAPTURED_SECRETS = {
    "authorization": "Bearer sk-user-0001",
    "cookie": "session=user-cookie-0002",
    "x-api-key": "sk-ant-user-0003",
    "X-Auth-Token": "user-auth-token-0004",
    "Ocp-Apim-Subscription-Key": "apim-user-key-0005",
    "x-vendor-session": "vendor-session-0006",
    "x-amz-security-token": "amz-user-token-0007",
    "x-goog-api-key": "AIza-user-key-0008",
    "api-key": "azure-user-key-0009",
    "x-portkey-virtual-key": "pk-user-0010",
}
OTHER_CAPTURED = {
    "content-type": "application/json",
    "accept": "application/json",
    "openai-organization": "org-production",
    "x-forwarded-for": "203.0.113.9",
    "x-request-source": "web",
    "x-tenant": "acme",
    "user-agent": "client/1.0",
}
PATHS = {  # captured path and query → the auth header the API takes
    "/v1/chat/completions": ("", "authorization"),
    "/v1/messages": ("", "x-api-key"),
    "/v1beta/models/gemini-2.0-flash:generateContent": (
        "key=AIza-user-key-0011&alt=sse",
        "x-goog-api-key",
    ),
    "/openai/deployments/gpt4o/chat/completions": (
        "api-version=2024-06-01&api-key=azure-user-key-0012",
        "api-key",
    ),
}
SECRET_VALUES = [v.split()[-1] for v in CAPTURED_SECRETS.values()] + [
    "AIza-user-key-0011",
    "azure-user-key-0012",
]


def trace_file(tmp_path: Path) -> str:
    records = [
        TraceRecord(
            trace_id=f"t{i}",
            captured_at=T0 + i * 1_000_000,
            request=HttpRequest(
                method="POST",
                path=path,
                query=query,
                headers={**CAPTURED_SECRETS, **OTHER_CAPTURED},
                body='{"model": "shadow-large", "messages": [{"role": "user", "content": "hi"}]}',
            ),
        )
        for i, (path, (query, _)) in enumerate(PATHS.items())
    ]
    source = tmp_path / "traces.jsonl"
    write_jsonl(source, records)
    return str(source)


def assert_no_captured_credential(arrivals: list[Arrival], arms: int = 1) -> None:
    assert len(arrivals) == len(PATHS) * arms
    for arrival in arrivals:
        wire = arrival.target + repr(arrival.headers)
        leaked = [v for v in SECRET_VALUES if v in wire]
        assert leaked == [], (arrival.target, leaked)
        assert "openai-organization" not in arrival.headers
        assert "x-forwarded-for" not in arrival.headers
        assert "x-tenant" not in arrival.headers  # not on pass_headers
        assert (
            "user-agent" not in arrival.headers or "client/1.0" not in arrival.headers["user-agent"]
        )
        assert arrival.headers["x-request-source"] == "web"
        assert arrival.headers["content-type"] == "application/json"


def by_path(arrivals: list[Arrival]) -> dict[str, Arrival]:
    return {a.target.partition("?")[0]: a for a in arrivals}


async def test_replay_sends_each_arm_its_own_key_in_the_apis_style(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Captured credentials under any name never arrive; the arm's key does, styled per API."""
    monkeypatch.setenv("BASELINE_KEY", "sk-baseline-own")
    monkeypatch.setenv("CANDIDATE_KEY", "sk-candidate-own")
    async with RecordingServer() as baseline, RecordingServer() as candidate:
        job = ReplayJob(
            source=trace_file(tmp_path),
            out=str(tmp_path / "run.duckdb"),
            arms={
                "baseline": ArmConfig(url=baseline.url, api_key_env="BASELINE_KEY"),
                "candidate": ArmConfig(
                    url=candidate.url,
                    api_key_env="CANDIDATE_KEY",
                    auth="bearer",  # e.g. an OpenAI-compatible gateway for every API
                    headers={"x-shadow-arm": "candidate"},
                ),
            },
            pricing=PricingTable(DEFAULT_PRICES),
            replay=ReplayConfig(pass_headers=("X-Request-Source",)),
            pacing=Pacing(speed=1000.0),
        )
        await run_replay(job)
    assert_no_captured_credential(baseline.arrivals)
    assert_no_captured_credential(candidate.arrivals)
    sent = by_path(baseline.arrivals)
    for path, (_, auth) in PATHS.items():
        value = sent[path].headers[auth]
        assert value == ("Bearer sk-baseline-own" if auth == "authorization" else "sk-baseline-own")
        others = {"authorization", "x-api-key", "x-goog-api-key", "api-key"} - {auth}
        assert others.isdisjoint(sent[path].headers)
    assert sent["/v1/messages"].headers["anthropic-version"] == "2023-06-01"
    gemini = "/v1beta/models/gemini-2.0-flash:generateContent"
    assert sent[gemini].target == gemini + "?alt=sse"
    azure = "/openai/deployments/gpt4o/chat/completions"
    assert sent[azure].target == azure + "?api-version=2024-06-01"
    for arrival in candidate.arrivals:
        assert arrival.headers["authorization"] == "Bearer sk-candidate-own"
        assert arrival.headers["x-shadow-arm"] == "candidate"
        assert {"x-api-key", "x-goog-api-key", "api-key"}.isdisjoint(arrival.headers)


async def test_the_mirror_builds_its_headers_the_same_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The live mirror's candidate gets no captured credential either."""
    monkeypatch.setenv("CANDIDATE_KEY", "sk-candidate-own")
    async with RecordingServer() as candidate:
        job = MirrorJob(
            source=trace_file(tmp_path),
            out=str(tmp_path / "mirror.duckdb"),
            candidate=ArmConfig(url=candidate.url, api_key_env="CANDIDATE_KEY"),
            pricing=PricingTable(DEFAULT_PRICES),
            replay=ReplayConfig(pass_headers=("x-request-source",)),
            wait_for_kafka=False,
        )
        await run_mirror(job)
    assert_no_captured_credential(candidate.arrivals)
    sent = by_path(candidate.arrivals)
    assert sent["/v1/messages"].headers["x-api-key"] == "sk-candidate-own"
    assert sent["/v1/chat/completions"].headers["authorization"] == "Bearer sk-candidate-own"


async def test_without_a_key_no_credential_header_is_sent(tmp_path: Path) -> None:
    """An arm without api_key_env sends no credential at all (none of the captured ones)."""
    async with RecordingServer() as server:
        job = ReplayJob(
            source=trace_file(tmp_path),
            out=str(tmp_path / "run.duckdb"),
            arms={"baseline": ArmConfig(url=server.url), "candidate": ArmConfig(url=server.url)},
            pricing=PricingTable(DEFAULT_PRICES),
            replay=ReplayConfig(pass_headers=("x-request-source",)),
            pacing=Pacing(speed=1000.0),
        )
        await run_replay(job)
    for arrival in server.arrivals:
        assert {"authorization", "x-api-key", "x-goog-api-key", "api-key", "cookie"}.isdisjoint(
            arrival.headers
        )
    assert_no_captured_credential(server.arrivals, arms=2)


def test_only_openai_style_streams_are_asked_for_usage() -> None:
    """``stream_options`` is an OpenAI field: an Anthropic stream's body is left as captured."""

    def body(path: str) -> dict[str, object]:
        record = TraceRecord(
            trace_id="t",
            captured_at=T0,
            request=HttpRequest(method="POST", path=path, body='{"stream": true}'),
        )
        sent = build_request(record, ArmConfig(url="http://127.0.0.1:9"), secret=None)
        return dict(json.loads(sent.body))

    assert body("/v1/chat/completions")["stream_options"] == {"include_usage": True}
    assert "stream_options" not in body("/v1/messages")
