"""The capture sidecar end to end: transparency, records, errors, safety, operations."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable

import httpx
import openai
import pytest

from capture.tee import Tee
from shadow.config import RedactionConfig, SamplingConfig
from shadow.serving import BackgroundServer
from shadow.sim import FaultConfig
from tests.capture.conftest import Recorder, RunningSidecar

MakeUpstream = Callable[..., tuple[BackgroundServer, Recorder]]
MakeSidecar = Callable[..., RunningSidecar]
Sdk = Callable[[str], openai.OpenAI]

CHAT = {
    "model": "shadow-large",
    "messages": [{"role": "user", "content": "explain the parser please"}],
    "max_tokens": 30,
    "temperature": 0,
}


def test_openai_sdk_through_the_sidecar_gets_what_a_direct_call_gets(
    sdk: Sdk, make_upstream: MakeUpstream, make_sidecar: MakeSidecar
) -> None:
    """The SDK's answers (stream and not) via the sidecar equal direct calls at temperature 0."""
    upstream, _ = make_upstream()
    sidecar = make_sidecar(upstream.url)
    direct, proxied = sdk(upstream.url), sdk(sidecar.url)
    kwargs = {"model": "x", "messages": CHAT["messages"], "max_tokens": 30, "temperature": 0}
    a = direct.chat.completions.create(**kwargs)  # type: ignore[call-overload]
    b = proxied.chat.completions.create(**kwargs)  # type: ignore[call-overload]
    assert b.choices[0].message.content == a.choices[0].message.content
    assert b.usage == a.usage
    streamed = [
        c.choices[0].delta.content or ""
        for c in proxied.chat.completions.create(**kwargs, stream=True)  # type: ignore[call-overload]
        if c.choices
    ]
    assert "".join(streamed) == a.choices[0].message.content


@pytest.mark.parametrize("stream", [False, True])
def test_client_receives_the_upstream_bytes_exactly(
    make_upstream: MakeUpstream, make_sidecar: MakeSidecar, stream: bool
) -> None:
    """Status and body bytes through the sidecar are exactly what the upstream sent."""
    upstream, recorder = make_upstream()
    sidecar = make_sidecar(upstream.url)
    body = {**CHAT, "stream": stream, "stream_options": {"include_usage": True}}
    with httpx.Client() as http:
        reply = http.post(
            sidecar.url + "/v1/chat/completions", json=body, headers={"x-test-id": "one"}
        )
    seen = recorder.seen["one"]
    assert reply.status_code == seen.status == 200
    assert reply.content == bytes(seen.response)
    assert reply.headers["content-type"] == ("text/event-stream" if stream else "application/json")


def test_stream_chunks_reach_the_client_as_they_arrive(
    make_upstream: MakeUpstream, make_sidecar: MakeSidecar
) -> None:
    """The first SSE event arrives long before the stream ends: nothing is buffered."""
    upstream, _ = make_upstream(time_scale=0.5)  # ~11 ms per token
    sidecar = make_sidecar(upstream.url)
    body = {**CHAT, "stream": True, "max_tokens": 40}
    with (
        httpx.Client() as http,
        http.stream("POST", sidecar.url + "/v1/chat/completions", json=body) as reply,
    ):
        started = time.perf_counter()
        lines = reply.iter_lines()
        first = next(line for line in lines if line.startswith("data:"))
        first_at = time.perf_counter() - started
        for _ in lines:
            pass
        total = time.perf_counter() - started
    assert first.startswith("data: {")
    assert first_at < total / 3


def test_records_hold_request_response_timing_usage_and_slices(
    sdk: Sdk, make_upstream: MakeUpstream, make_sidecar: MakeSidecar
) -> None:
    """Each exchange becomes one record with bodies, SSE text, TTFT, usage and slice labels."""
    upstream, _ = make_upstream("routed", time_scale=0.05)
    sidecar = make_sidecar(upstream.url, service="checkout-llm")
    client = sdk(sidecar.url)
    plain = client.chat.completions.create(
        model="shadow-large",
        messages=[{"role": "user", "content": "complete the line"}],
        max_tokens=12,
        metadata={"intent": "complete"},
        extra_headers={"x-tenant": "acme"},
    )
    chunks = list(
        client.chat.completions.create(
            model="shadow-large",
            messages=[{"role": "user", "content": "debug this"}],
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
            metadata={"intent": "debug"},
        )
    )
    sidecar.stop()
    first, second = sidecar.records()
    assert first.service == "checkout-llm"
    assert first.request.method == "POST"
    assert first.request.path == "/v1/chat/completions"
    assert json.loads(first.request.body or "")["max_tokens"] == 12
    assert first.response is not None
    assert first.response.status == 200
    assert json.loads(first.response.body or "")["choices"][0]["message"]["content"] == (
        plain.choices[0].message.content
    )
    assert first.usage is not None
    assert first.usage.model == "shadow-small"
    assert plain.usage is not None
    assert first.usage.completion_tokens == plain.usage.completion_tokens
    assert not first.usage.estimated
    assert first.slices == {
        "tenant": "acme",
        "intent": "complete",
        "model": "shadow-large",
        # the request features every record has (shadow/wire/features.py)
        "turns": "1",
        "prompt_size": "<256",
        "tools": "no",
        "tool_calls": "no",
        "stream": "no",
        "format": "openai",
    }
    assert first.timing.latency_ms is not None
    assert first.timing.latency_ms > 0
    assert first.timing.ttft_ms is None
    assert second.response is not None
    assert second.response.stream
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert second.response.body == text
    assert second.response.chunk_offsets_ms is not None
    usage = next(c.usage for c in chunks if c.usage is not None)
    assert len(second.response.chunk_offsets_ms) == usage.completion_tokens
    assert second.timing.ttft_ms is not None
    assert second.timing.latency_ms is not None
    assert 0 < second.timing.ttft_ms < second.timing.latency_ms
    assert second.usage is not None
    assert second.usage.model == "shadow-large"
    assert second.usage.completion_tokens == usage.completion_tokens
    assert second.slices["intent"] == "debug"
    assert first.captured_at < second.captured_at


def test_secrets_are_redacted_in_records_but_reach_the_upstream(
    make_upstream: MakeUpstream, make_sidecar: MakeSidecar
) -> None:
    """Authorization, cookies and keys in bodies never reach the sink; the upstream gets them."""
    upstream, recorder = make_upstream()
    sidecar = make_sidecar(upstream.url, redaction=RedactionConfig(json_paths=("$.user",)))
    key = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD"
    body = {
        **CHAT,
        "user": "customer-4711",
        "messages": [{"role": "user", "content": f"my key is {key}, mail me at a.b@example.com"}],
    }
    with httpx.Client() as http:
        http.post(
            sidecar.url + "/v1/chat/completions?api_key=qs-secret-value",
            json=body,
            headers={
                "authorization": "Bearer tok-very-secret",
                "cookie": "session=cookie-secret",
                "x-test-id": "s",
            },
        ).raise_for_status()
    sidecar.stop()
    (record,) = sidecar.records()
    raw = sidecar.out.read_text()
    for secret in (key, "tok-very-secret", "cookie-secret", "a.b@example.com", "qs-secret-value",
                   "customer-4711"):  # fmt: skip
        assert secret not in raw
    assert record.request.headers["authorization"] == "[REDACTED]"
    seen = recorder.seen["s"]
    assert seen.headers["authorization"] == "Bearer tok-very-secret"
    assert key in seen.body.decode()
    assert seen.query == b"api_key=qs-secret-value"


def test_unreachable_upstream_is_a_502_with_a_json_error(make_sidecar: MakeSidecar) -> None:
    """A dead upstream gives the client a 502 with a short JSON body, and a record says so."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    sidecar = make_sidecar(f"http://127.0.0.1:{dead}")
    reply = httpx.post(sidecar.url + "/v1/chat/completions", json=CHAT)
    assert reply.status_code == 502
    assert reply.json()["error"]["type"] == "upstream_unreachable"
    sidecar.stop()
    (record,) = sidecar.records()
    assert record.error == "upstream_unreachable"
    assert record.response is not None
    assert record.response.status == 502


def test_upstream_timeout_is_a_504(make_upstream: MakeUpstream, make_sidecar: MakeSidecar) -> None:
    """An upstream that never answers within read_timeout_s gives a 504."""
    upstream, _ = make_upstream(faults=FaultConfig(hang_rate=1.0))
    sidecar = make_sidecar(upstream.url, read_timeout_s=0.3)
    reply = httpx.post(sidecar.url + "/v1/chat/completions", json=CHAT, timeout=10)
    assert reply.status_code == 504
    assert reply.json()["error"]["type"] == "upstream_timeout"
    sidecar.stop()
    assert sidecar.records()[0].error == "upstream_timeout"


def test_client_disconnect_mid_stream_cancels_the_upstream_request(
    make_upstream: MakeUpstream, make_sidecar: MakeSidecar
) -> None:
    """A client that goes away mid-stream makes the sidecar drop its upstream request too."""
    upstream, recorder = make_upstream(time_scale=1.0)  # 22 ms per token: 200 tokens ~ 4.6 s
    sidecar = make_sidecar(upstream.url)
    body = {**CHAT, "stream": True, "max_tokens": 200}
    with (
        httpx.Client() as http,
        http.stream(
            "POST", sidecar.url + "/v1/chat/completions", json=body, headers={"x-test-id": "gone"}
        ) as reply,
    ):
        lines = reply.iter_lines()
        for _ in range(6):
            next(lines)
    started = time.monotonic()
    seen = recorder.seen["gone"]
    while not seen.disconnected and time.monotonic() - started < 3:
        time.sleep(0.01)  # waiting on an observed condition, bounded
    assert seen.disconnected
    assert not seen.complete
    sidecar.stop()
    (record,) = sidecar.records()
    assert record.error == "client_disconnected"


def test_open_proxy_attempts_never_leave_the_upstream(
    make_upstream: MakeUpstream, make_sidecar: MakeSidecar
) -> None:
    """Absolute-form targets and CONNECT are refused; a forged Host still goes upstream only."""
    upstream, recorder = make_upstream()
    sidecar = make_sidecar(upstream.url)
    port = sidecar.server.port

    def raw(request: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(request)
            return conn.recv(65536)

    # uvicorn reduces an absolute-form target to its path: it can only reach the upstream.
    absolute = raw(
        b"GET http://example.com/v1/models HTTP/1.1\r\nHost: example.com\r\n"
        b"x-test-id: absolute\r\nConnection: close\r\n\r\n"
    )
    connect = raw(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    assert absolute.startswith(b"HTTP/1.1 200")
    assert b'"shadow-large"' in absolute
    assert recorder.seen["absolute"].path == "/v1/models"
    assert recorder.seen["absolute"].headers["host"] == f"127.0.0.1:{upstream.port}"
    assert connect.startswith(b"HTTP/1.1 400")
    forged = httpx.get(
        sidecar.url + "/v1/models", headers={"host": "evil.example", "x-test-id": "forged"}
    )
    assert forged.status_code == 200
    assert recorder.seen["forged"].headers["host"] == f"127.0.0.1:{upstream.port}"
    assert all(seen.path.startswith("/v1/") for seen in recorder.seen.values())


def test_binary_huge_and_malformed_bodies_pass_through_and_are_recorded(
    make_upstream: MakeUpstream, make_sidecar: MakeSidecar
) -> None:
    """Odd bodies reach the upstream unchanged; records keep them capped, flagged, in base64."""
    upstream, recorder = make_upstream()
    sidecar = make_sidecar(upstream.url, body_cap_bytes=4096)
    binary = bytes(range(256)) * 32  # 8 KiB, not UTF-8
    huge = json.dumps({**CHAT, "pad": "x" * 200_000}).encode()
    with httpx.Client() as http:
        bad = http.post(
            sidecar.url + "/v1/chat/completions", content=b"{not json", headers={"x-test-id": "m"}
        )
        blob = http.post(
            sidecar.url + "/v1/chat/completions", content=binary, headers={"x-test-id": "b"}
        )
        big = http.post(
            sidecar.url + "/v1/chat/completions",
            content=huge,
            headers={"x-test-id": "h", "content-type": "application/json"},
        )
    assert bad.status_code == blob.status_code == 400
    assert big.status_code == 200
    assert bytes(recorder.seen["b"].body) == binary
    assert bytes(recorder.seen["h"].body) == huge
    sidecar.stop()
    by_body = {r.request.body_bytes()[:9]: r for r in sidecar.records()}
    malformed = by_body[b"{not json"]
    assert malformed.response is not None
    assert malformed.response.status == 400
    binary_record = next(r for r in sidecar.records() if r.request.body_b64 is not None)
    assert binary_record.request.body_bytes() == binary[:4096]
    assert binary_record.request.body_truncated
    huge_record = next(r for r in sidecar.records() if r.response and r.response.status == 200)
    assert huge_record.request.body_truncated
    assert len(huge_record.request.body_bytes()) <= 4096


def test_consistent_sampling_keeps_a_users_requests_together(
    make_upstream: MakeUpstream, make_sidecar: MakeSidecar
) -> None:
    """With a 50% rate keyed on x-user-id, each user's requests are all in or all out."""
    upstream, _ = make_upstream()
    sidecar = make_sidecar(upstream.url, sampling=SamplingConfig(rate=0.5, key_header="x-user-id"))
    users = [f"user-{i}" for i in range(40)]
    with httpx.Client() as http:
        for user in users:
            for _ in range(3):
                http.get(sidecar.url + "/v1/models", headers={"x-user-id": user})
    sidecar.stop()
    per_user: dict[str, int] = {}
    for record in sidecar.records():
        user = record.request.headers["x-user-id"]
        per_user[user] = per_user.get(user, 0) + 1
    assert set(per_user.values()) == {3}
    assert 8 <= len(per_user) <= 32


def test_metrics_and_health_are_served_under_the_admin_prefix(
    make_upstream: MakeUpstream, make_sidecar: MakeSidecar
) -> None:
    """/shadow/metrics exposes Prometheus counters; /shadow/health reports the tee's state."""
    upstream, recorder = make_upstream()
    sidecar = make_sidecar(upstream.url)
    with httpx.Client() as http:
        for _ in range(5):
            http.post(sidecar.url + "/v1/chat/completions", json=CHAT).raise_for_status()
        metrics = http.get(sidecar.url + "/shadow/metrics").text
        health = http.get(sidecar.url + "/shadow/health").json()
    assert 'shadow_capture_requests_total{status="2xx"} 5.0' in metrics
    assert "shadow_capture_added_latency_seconds_count 5.0" in metrics
    assert "shadow_capture_queue_depth" in metrics
    assert health["status"] == "ok"
    assert health["delivery"] == "direct"
    assert not any(seen.path.startswith("/shadow") for seen in recorder.seen.values())


def test_the_admin_prefix_is_configurable(
    make_upstream: MakeUpstream, make_sidecar: MakeSidecar
) -> None:
    """With another prefix, /shadow/... belongs to the upstream again."""
    upstream, recorder = make_upstream()
    sidecar = make_sidecar(upstream.url, admin_prefix="/_capture")
    assert httpx.get(sidecar.url + "/_capture/health").json()["status"] == "ok"
    httpx.get(sidecar.url + "/shadow/health", headers={"x-test-id": "passthrough"})
    assert recorder.seen["passthrough"].path == "/shadow/health"


class _DownSink:
    """A sink that is down until told otherwise (for spool ordering without Kafka timing)."""

    name = "down://test"

    def __init__(self) -> None:
        self.up = False
        self.batches: list[list[bytes]] = []

    async def send_batch(self, batch: list[tuple[bytes, bytes]]) -> None:
        from capture.sinks import SinkError

        if not self.up:
            raise SinkError("down")
        self.batches.append([value for _, value in batch])

    async def aclose(self) -> None:
        return None


def test_a_down_sink_never_fails_live_requests_and_the_spool_drains_in_order(
    make_upstream: MakeUpstream, make_sidecar: MakeSidecar
) -> None:
    """While the sink is down requests succeed and records spool; they arrive in order later."""
    upstream, _ = make_upstream()
    sink = _DownSink()
    sidecar = make_sidecar(upstream.url, sink=sink)
    with httpx.Client() as http:
        for i in range(30):
            reply = http.post(
                sidecar.url + "/v1/chat/completions", json=CHAT, headers={"x-seq": str(i)}
            )
            assert reply.status_code == 200
        health = http.get(sidecar.url + "/shadow/health").json()
    assert health["delivery"] == "spooling"
    sink.up = True
    sidecar.stop()  # shutdown drains the spool within the grace period
    from shadow.trace.record import decode

    values = [decode(v) for batch in sink.batches for v in batch]
    assert [int(r.request.headers["x-seq"]) for r in values] == list(range(30))
    assert isinstance(sidecar.app.tee, Tee)  # a fake sink: the tee runs on the serving loop
    assert sidecar.app.tee.spool.empty


def test_a_full_spool_drops_and_counts_but_never_fails_a_request(
    make_upstream: MakeUpstream, make_sidecar: MakeSidecar
) -> None:
    """At the spool's disk cap records are dropped and counted; every request still succeeds."""
    upstream, _ = make_upstream()
    sidecar = make_sidecar(
        upstream.url, sink=_DownSink(), spool_max_bytes=8192, shutdown_grace_s=0.5
    )
    with httpx.Client() as http:
        statuses = [
            http.post(sidecar.url + "/v1/chat/completions", json=CHAT).status_code
            for _ in range(40)
        ]
        metrics = http.get(sidecar.url + "/shadow/metrics").text
    assert statuses == [200] * 40
    dropped = re.search(
        r'shadow_capture_records_dropped_total\{reason="spool_full"\} (\S+)', metrics
    )
    spooled = re.search(r"^shadow_capture_records_spooled_total (\S+)", metrics, re.MULTILINE)
    assert dropped is not None
    assert spooled is not None
    assert float(dropped.group(1)) > 0
    assert float(spooled.group(1)) + float(dropped.group(1)) <= 40
    assert isinstance(sidecar.app.tee, Tee)
    assert sidecar.app.tee.spool.bytes_on_disk <= 8192
