"""ReplayPlan: the schedule, its shards, a resumed run's re-timed remainder and the dry run."""

from __future__ import annotations

import numpy as np
import pytest

from shadow.config import ArmConfig
from shadow.errors import UsageError
from shadow.replay.plan import Pacing, ReplayPlan
from shadow.replay.sources import SourceItem
from shadow.trace.record import HttpRequest, TraceRecord
from shadow.wire.routes import RouteAllowList
from tests.shadow.replay.fakes import T0, records

ARMS = ("baseline", "candidate")


def plan_of(n: int, *, speed: float = 1.0) -> ReplayPlan:
    """A plan of ``n`` records captured one second apart."""
    items = [SourceItem(record=r, position=None) for r in records(n, step_ns=1_000_000_000)]
    return ReplayPlan.build(items, pacing=Pacing(speed=speed), arms=ARMS)


def test_recorded_gaps_over_speed_give_the_offsets() -> None:
    """Records a second apart, at speed 4, are due every 0.25 s from 0."""
    assert plan_of(4, speed=4).offsets.tolist() == [0.0, 0.25, 0.5, 0.75]


def test_a_rate_or_a_ramp_ignores_recorded_times() -> None:
    """With a rate the offsets come from the arrival process, not from captured_at."""
    items = [SourceItem(record=r, position=None) for r in records(5, step_ns=10**12)]
    plan = ReplayPlan.build(items, pacing=Pacing(rate=10, arrival="constant"), arms=ARMS)
    assert np.allclose(plan.offsets, [0.0, 0.1, 0.2, 0.3, 0.4])


def test_a_shard_keeps_every_nth_record_and_its_global_offset() -> None:
    """Shard 1 of 3 holds records 1, 4, 7 at their offsets in the whole schedule."""
    shard = plan_of(9).shard(1, 3)
    assert [i.record.trace_id for i in shard.items] == ["t001", "t004", "t007"]
    assert shard.offsets.tolist() == [1.0, 4.0, 7.0]


@pytest.mark.parametrize(("index", "count"), [(2, 2), (-1, 2), (0, 0)])
def test_a_shard_that_does_not_exist_is_refused_without_naming_a_flag(
    index: int, count: int
) -> None:
    """The library states the facts; the CLI words them with its flag."""
    with pytest.raises(UsageError, match=f"^shard has value {index}/{count};") as info:
        plan_of(3).shard(index, count)
    assert info.value.setting == "shard"


def test_a_resumed_plan_starts_what_is_left_now_with_its_gaps() -> None:
    """Records 0-2 answered on both arms: record 3 becomes due at 0, the rest keep their gaps."""
    plan = plan_of(6)
    done = {(f"t{i:03d}", arm) for i in range(3) for arm in ARMS} | {("t003", "baseline")}
    resumed = plan.resume(done)
    assert resumed.offsets.tolist() == [0.0, 0.0, 0.0, 0.0, 1.0, 2.0]
    assert plan.offsets.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # the original is unchanged


def test_a_fresh_or_finished_plan_is_not_re_timed() -> None:
    """Nothing done, or everything done: the offsets stay as they were."""
    plan = plan_of(3)
    everything = {(f"t{i:03d}", arm) for i in range(3) for arm in ARMS}
    assert plan.resume(set()).offsets.tolist() == [0.0, 1.0, 2.0]
    assert plan.resume(everything).offsets.tolist() == [0.0, 1.0, 2.0]


def test_the_dry_run_lists_what_is_sent_and_counts_what_is_not() -> None:
    """Paths outside the allow-list are counted, captured credentials named as not replayed."""
    mixed = [
        TraceRecord(
            trace_id=f"x{i}",
            captured_at=T0 + i * 500_000_000,
            request=HttpRequest(
                method="POST", path=path, body="{}", headers={"authorization": "Bearer k"}
            ),
            slices={"tenant": "acme"},
        )
        for i, path in enumerate(["/v1/chat/completions", "/admin", "/v1/chat/completions"])
    ]
    items = [SourceItem(record=r, position=None) for r in mixed]
    plan = ReplayPlan.build(items, pacing=Pacing(), arms=ARMS)
    dry = plan.dry_run(RouteAllowList(["POST /v1/chat/completions"]))
    assert [row.trace_id for row in dry.rows] == ["x0", "x2"]
    assert dry.skipped == 1
    assert dry.skipped_by_reason == {"skipped_path": 1}
    assert dry.headers_dropped == ["authorization"]
    lines = dry.lines()
    assert "tenant=acme" in lines[1]
    assert lines[-1] == (
        "2 records to baseline, candidate over 1.0 s; 1 skipped (skipped_path: 1); "
        "headers not replayed: authorization"
    )


def test_the_dry_run_counts_what_a_translating_arm_cannot_take() -> None:
    """An Anthropic-format candidate cannot take n > 1: counted skipped_untranslatable, listed
    nowhere; a plain chat request goes on."""
    chat = '"messages": [{"role": "user", "content": "hi"}]'
    bodies = [f'{{"model": "m", {chat}}}', f'{{"model": "m", "n": 3, {chat}}}']
    recs = [
        TraceRecord(
            trace_id=f"x{i}",
            captured_at=T0 + i,
            request=HttpRequest(method="POST", path="/v1/chat/completions", body=body),
        )
        for i, body in enumerate(bodies)
    ]
    items = [SourceItem(record=r, position=None) for r in recs]
    plan = ReplayPlan.build(items, pacing=Pacing(), arms=ARMS)
    arms = {
        "baseline": ArmConfig(url="http://127.0.0.1:1"),
        "candidate": ArmConfig(
            url="http://127.0.0.1:2", format="anthropic", body_overrides={"model": "claude"}
        ),
    }
    dry = plan.dry_run(None, (), arms)
    assert [row.trace_id for row in dry.rows] == ["x0"]
    assert dry.skipped_by_reason == {"skipped_untranslatable": 1}
    assert plan.dry_run().skipped == 0  # without the arms, nothing to translate
