"""Replay sends only what is safe by construction, checked on the wire of a real local server.

Every case of issue 13's list: deletes, updates, lists and cancels of stored completions and
responses, a path that only starts like an endpoint, and ``..`` escapes in plain and
percent-encoded forms. Each is replayed through ``run_replay`` / ``run_mirror`` (the code the
CLI runs) to :class:`RecordingServer` arms, which record what arrives.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import duckdb
import msgspec
import pytest

from analysis.analyze import analyze
from analysis.run import open_run
from shadow.config import ArmConfig, ReplayConfig
from shadow.replay.jobs import MirrorJob, ReplayJob, run_mirror, run_replay
from shadow.replay.mirror import Mirror
from shadow.replay.plan import Pacing
from shadow.replay.pricing import DEFAULT_PRICES, PricingTable
from shadow.replay.replayer import Replayer
from shadow.replay.scheduler import FanOut
from shadow.replay.stats import ReplayStats
from shadow.replay.targets import HttpTarget
from shadow.results.store import ResultsStore
from shadow.results.writer import AsyncResultsWriter
from shadow.trace.jsonl import write_jsonl
from shadow.trace.record import HttpRequest, HttpResponse, TraceRecord
from shadow.wire.routes import RouteAllowList
from tests.shadow.replay.fakes import AnsweringTarget, ListSource, records
from tests.shadow.replay.recorder import RecordingServer

T0 = 1_700_000_000_000_000_000

CASES = [  # (method, captured path, what arrives or the skip reason)
    ("POST", "/v1/chat/completions", "/v1/chat/completions"),
    ("DELETE", "/v1/chat/completions/chatcmpl-1", "skipped_path"),
    ("POST", "/v1/chat/completions/chatcmpl-1", "skipped_path"),
    ("GET", "/v1/chat/completions", "skipped_method"),
    ("DELETE", "/v1/responses/resp_1", "skipped_path"),
    ("POST", "/v1/responses/resp_1/cancel", "skipped_path"),
    ("POST", "/v1/embeddingsadmin", "skipped_path"),
    ("POST", "/v1/chat/completions/../../files", "skipped_path_escape"),
    ("POST", "/v1/chat/completions/%2e%2e/%2e%2e/files", "skipped_path_escape"),
    ("POST", "/v1/chat/completions/%2E%2E%2F%2E%2E%2Ffiles", "skipped_path_escape"),
    ("POST", "/../v1/chat/completions", "skipped_path_escape"),
    ("POST", "/v1/chat/completions%252e%252e", "skipped_path"),
    ("POST", "//v1//chat/./completions/", "/v1/chat/completions"),
    ("POST", "/v1/chat%2Fcompletions", "/v1/chat/completions"),
    ("POST", "/v1/embeddings", "/v1/embeddings"),
    ("POST", "/v1beta/models/gemini-2.0-flash:generateContent", None),
]
SENT = [(m, p if want is None else want) for m, p, want in CASES if want is None or "/" in want]
SKIPPED = {"skipped_path": 6, "skipped_method": 1, "skipped_path_escape": 4}


def trace_file(tmp_path: Path, cases: list[tuple[str, str, str | None]]) -> str:
    records = [
        TraceRecord(
            trace_id=f"t{i:02d}",
            captured_at=T0 + i * 1_000_000,
            request=HttpRequest(
                method=method,
                path=path,
                headers={"content-type": "application/json"},
                body='{"model": "shadow-large", "messages": [{"role": "user", "content": "hi"}]}',
            ),
            response=HttpResponse(status=200, body='{"choices": []}'),
        )
        for i, (method, path, _) in enumerate(cases)
    ]
    source = tmp_path / "traces.jsonl"
    write_jsonl(source, records)
    return str(source)


async def test_the_http_client_resolves_dot_segments_so_a_raw_prefix_is_no_guard() -> None:
    """The reproduction: a raw path that starts with an endpoint reaches the server elsewhere.

    The old guard matched ``/v1/chat/completions`` as a prefix of the captured path, then sent
    it as captured; the client resolves ``..`` (and ``%2e%2e``), so the request arrived as
    ``POST /v1/files``. The guard now normalises first and sends the normalised path.
    """
    async with RecordingServer() as server, aiohttp.ClientSession() as session:
        for path in (
            "/v1/chat/completions/../../files",
            "/v1/chat/completions/%2e%2e/%2e%2e/files",
        ):
            async with session.post(server.url + path, data=b"{}") as resp:
                assert resp.status == 200
    assert server.seen() == [("POST", "/v1/files"), ("POST", "/v1/files")]


async def test_only_allowed_routes_reach_the_arms_and_skips_are_counted_everywhere(
    tmp_path: Path,
) -> None:
    """Summary, result rows and analyze count each refused record by reason; none is sent."""
    source = trace_file(tmp_path, CASES)
    out = tmp_path / "run.duckdb"
    async with RecordingServer() as baseline, RecordingServer() as candidate:
        job = ReplayJob(
            source=source,
            out=str(out),
            arms={
                "baseline": ArmConfig(url=baseline.url),
                "candidate": ArmConfig(url=candidate.url),
            },
            pricing=PricingTable(DEFAULT_PRICES),
            pacing=Pacing(speed=1000.0),
        )
        dry = await run_replay(job, dry_run=True)
        outcome = await run_replay(job)
    assert baseline.seen() == candidate.seen() == sorted(SENT)
    assert dry.dry_run is not None
    assert dry.dry_run.skipped_by_reason == SKIPPED
    assert sorted((r.path) for r in dry.dry_run.rows) == sorted(p for _, p in SENT)
    for reason, count in SKIPPED.items():
        assert outcome.summary[reason] == count
    with duckdb.connect(str(out), read_only=True) as con:
        rows = con.execute(
            "select arm, error, count(*), count(sent_at) from results"
            " where error like 'skipped%' group by all order by all"
        ).fetchall()
    assert rows == [
        (arm, reason, count, 0)
        for arm in ("baseline", "candidate")
        for reason, count in sorted(SKIPPED.items())
    ]
    result = analyze(open_run(out), n_boot=50).to_json()
    groups = {g["arm"]: g for g in result["groups"]}
    for arm in ("baseline", "candidate"):
        assert groups[arm]["n"] == len(SENT)
        assert groups[arm]["skipped"] == sum(SKIPPED.values())
        assert {k: v for k, v in groups[arm]["errors"].items() if k in SKIPPED} == SKIPPED
        # Refused requests are not inference: the cost and its projection stay complete.
        assert "skipped" not in str(groups[arm].get("monthly_spend_reason"))


async def test_a_custom_allow_list_replays_its_routes_and_nothing_else(tmp_path: Path) -> None:
    """``replay.allow`` replaces the default: a placeholder matches one segment, never ``/``."""
    cases: list[tuple[str, str, str | None]] = [
        ("POST", "/v2/tenants/acme/generate", None),
        ("POST", "/v2/tenants/acme/x/generate", "skipped_path"),
        ("POST", "/v1/chat/completions", "skipped_path"),
    ]
    async with RecordingServer() as server:
        job = ReplayJob(
            source=trace_file(tmp_path, cases),
            out=str(tmp_path / "run.duckdb"),
            arms={"baseline": ArmConfig(url=server.url), "candidate": ArmConfig(url=server.url)},
            pricing=PricingTable(DEFAULT_PRICES),
            replay=ReplayConfig(allow=("POST /v2/tenants/{tenant}/generate",)),
            pacing=Pacing(speed=1000.0),
        )
        outcome = await run_replay(job)
    assert server.seen() == [("POST", "/v2/tenants/acme/generate")] * 2
    assert outcome.summary["skipped_path"] == 2


async def test_the_mirror_uses_the_same_guard(tmp_path: Path) -> None:
    """The mirror sends what the replay would: normalised allowed routes only, skips counted."""
    out = tmp_path / "mirror.duckdb"
    async with RecordingServer() as candidate:
        job = MirrorJob(
            source=trace_file(tmp_path, CASES),
            out=str(out),
            candidate=ArmConfig(url=candidate.url),
            pricing=PricingTable(DEFAULT_PRICES),
            wait_for_kafka=False,
        )
        outcome = await run_mirror(job)
    assert candidate.seen() == sorted(SENT)
    for reason, count in SKIPPED.items():
        assert outcome.summary[reason] == count
    with duckdb.connect(str(out), read_only=True) as con:
        rows = con.execute(
            "select error, count(*) from results where arm = 'candidate'"
            " and error like 'skipped%' group by all order by all"
        ).fetchall()
    assert rows == sorted(SKIPPED.items())


@pytest.mark.parametrize("path", ["/v1/files", "/v1/chat/completions/../../files"])
async def test_a_target_refuses_on_its_own_whatever_its_caller(tmp_path: Path, path: str) -> None:
    """HttpTarget holds the guard too: a refused request is an attempt with the reason, unsent."""
    record = TraceRecord(
        trace_id="t", captured_at=T0, request=HttpRequest(method="POST", path=path, body="{}")
    )
    async with RecordingServer() as server:
        target = HttpTarget("candidate", ArmConfig(url=server.url))
        try:
            attempt = await target.send(record, due=0.0)
        finally:
            await target.aclose()
    assert server.arrivals == []
    assert attempt.sent_at is None
    assert attempt.error in ("skipped_path", "skipped_path_escape")


async def _guarded(
    path: Path, recs: list[TraceRecord], *, mirror: bool = False
) -> tuple[ReplayStats, dict[str, AnsweringTarget], ListSource]:
    """Replay (or mirror) ``recs`` from a committing source through the default guard to
    answering targets, results in ``path``."""
    source = ListSource(recs)
    arms = ["candidate"] if mirror else ["baseline", "candidate"]
    targets = {arm: AnsweringTarget(arm) for arm in arms}
    store = ResultsStore.open(path)
    store.start_run("r", source="test", config={}, arms=["production", *arms] if mirror else arms)
    async with AsyncResultsWriter(store) as writer:
        fanout = FanOut(
            run_id="r",
            targets=dict(targets),
            writer=writer,
            pricing=PricingTable(DEFAULT_PRICES),
            routes=RouteAllowList(),
            source=source,
        )
        if mirror:
            stats = await Mirror(fanout).run()
        else:
            stats = await Replayer(fanout, items=source.items, offsets=[0.0] * len(recs)).run()
    store.close()
    return stats, targets, source


async def test_a_refused_record_is_finished_so_it_never_holds_back_commits(tmp_path: Path) -> None:
    """Its position is committed with the others once its skip rows are written."""
    recs = records(4)
    recs[1] = msgspec.structs.replace(
        recs[1], request=HttpRequest(method="DELETE", path="/v1/chat/completions/c1")
    )
    stats, targets, source = await _guarded(tmp_path / "run.duckdb", recs)
    assert stats.skipped_path == 1
    assert targets["candidate"].sent == ["t000", "t002", "t003"]
    assert sorted(source.committed) == [("t", 0, i) for i in range(4)]


async def test_a_record_the_mirror_refuses_never_holds_back_commits(tmp_path: Path) -> None:
    """The live mirror finishes a refused record's position too, so commits move past it."""
    recs = records(4)
    recs[2] = msgspec.structs.replace(recs[2], request=HttpRequest(method="POST", path="/v1/files"))
    stats, targets, source = await _guarded(tmp_path / "mirror.duckdb", recs, mirror=True)
    assert stats.skipped_path == 1
    assert targets["candidate"].sent == ["t000", "t001", "t003"]
    assert sorted(source.committed) == [("t", 0, i) for i in range(4)]


async def test_a_request_whose_body_was_not_captured_whole_is_never_sent(tmp_path: Path) -> None:
    """A body cut at the sidecar's cap (or that did not decode) is skipped_body: no arm gets
    half a request; the others go out."""
    recs = records(3)
    cut = msgspec.structs.replace(recs[1].request, body='{"model": "m", "mess', body_truncated=True)
    recs[1] = msgspec.structs.replace(recs[1], request=cut)
    stats, targets, _ = await _guarded(tmp_path / "run.duckdb", recs)
    assert stats.skipped_body == 1
    assert stats.as_dict()["skipped_body"] == 1
    assert targets["baseline"].sent == ["t000", "t002"]
    assert targets["candidate"].sent == ["t000", "t002"]
    with duckdb.connect(str(tmp_path / "run.duckdb"), read_only=True) as con:
        errors = con.execute("select arm, error from results where trace_id = 't001'").fetchall()
    assert sorted(errors) == [("baseline", "skipped_body"), ("candidate", "skipped_body")]
