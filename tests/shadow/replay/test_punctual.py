"""While a replay runs, neither the cycle collector nor another thread's GIL hold delays it."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

from shadow.replay.pricing import DEFAULT_PRICES, PricingTable
from shadow.replay.replayer import Replayer
from shadow.replay.scheduler import FanOut
from shadow.replay.sources import SourceItem
from shadow.replay.targets import Attempt
from shadow.results.store import ResultsStore
from shadow.results.writer import AsyncResultsWriter
from shadow.trace.record import TraceRecord
from tests.shadow.replay.fakes import AnsweringTarget, records


class ObservingTarget(AnsweringTarget):
    """Notes the collector's and the interpreter's settings at every send."""

    def __init__(self, arm: str) -> None:
        super().__init__(arm)
        self.seen: list[tuple[int, int, float]] = []

    async def send(self, record: TraceRecord, *, due: float) -> Attempt:
        self.seen.append((gc.get_freeze_count(), gc.get_threshold()[0], sys.getswitchinterval()))
        return await super().send(record, due=due)


async def test_a_replay_freezes_the_loaded_records_and_restores_everything_after(
    tmp_path: Path,
) -> None:
    """During the run: records frozen out of the collector, rare young collections, a short
    GIL switch interval; after it, Python's own settings again (even for the next run)."""
    before = (gc.get_freeze_count(), gc.get_threshold(), sys.getswitchinterval())
    store = ResultsStore.open(tmp_path / "run.duckdb")
    store.start_run("p", source="test", config={}, arms=["baseline", "candidate"])
    writer = AsyncResultsWriter(store)
    targets = {"baseline": ObservingTarget("baseline"), "candidate": ObservingTarget("candidate")}
    fanout = FanOut(
        run_id="p", targets=targets, writer=writer, pricing=PricingTable(DEFAULT_PRICES)
    )
    loaded = records(5)
    replayer = Replayer(
        fanout,
        items=[SourceItem(record=r, position=None) for r in loaded],
        offsets=[0.0, 0.001, 0.002, 0.003, 0.004],
    )
    await replayer.run()
    await writer.aclose()
    store.close()
    seen = targets["baseline"].seen + targets["candidate"].seen
    assert len(seen) == 10
    for frozen, threshold, switch in seen:
        assert frozen > before[0]  # the loaded records (and all else alive) are frozen
        assert threshold >= 50_000
        assert switch <= 0.0005
    assert (gc.get_freeze_count(), gc.get_threshold(), sys.getswitchinterval()) == before
