"""OffsetTracker: a partition commits only through a prefix of finished records."""

from __future__ import annotations

from shadow.kafka.offsets import OffsetTracker


def test_offset_tracker_commits_only_through_a_finished_prefix() -> None:
    """Out-of-order completions advance a partition only up to its first unfinished record."""
    tracker = OffsetTracker()
    for offset in range(6):
        tracker.delivered(("t", 0, offset))
    for offset in (10, 12, 15):  # a compacted partition: offsets with gaps
        tracker.delivered(("t", 1, offset))
    assert tracker.committable() == {}

    tracker.done(("t", 0, 2))
    tracker.done(("t", 0, 3))
    assert tracker.committable() == {}  # offset 0 is still running

    tracker.done(("t", 0, 0))
    assert tracker.committable() == {("t", 0): 1}
    tracker.committed({("t", 0): 1})
    assert tracker.committable() == {}

    tracker.done(("t", 0, 1))
    tracker.done(("t", 0, 5))
    assert tracker.committable() == {("t", 0): 4}  # 4 unfinished; 5 must wait for it

    tracker.done(("t", 1, 12))
    tracker.done(("t", 1, 10))
    assert tracker.committable() == {("t", 0): 4, ("t", 1): 15}

    tracker.done(("t", 0, 4))
    tracker.done(("t", 1, 15))
    tracker.done(("t", 9, 0))  # never delivered: ignored
    assert tracker.committable() == {("t", 0): 6, ("t", 1): 16}

    tracker.forget("t", 1)
    assert tracker.committable() == {("t", 0): 6}


def test_offset_tracker_starts_a_partition_afresh_when_offsets_go_back() -> None:
    """A re-delivery from an earlier offset (after a rebalance) restarts that partition's count."""
    tracker = OffsetTracker()
    for offset in (5, 6, 7):
        tracker.delivered(("t", 0, offset))
    tracker.done(("t", 0, 5))
    assert tracker.committable() == {("t", 0): 6}
    tracker.delivered(("t", 0, 6))  # read again from the committed-but-not-yet offset 6
    assert tracker.committable() == {}
    tracker.done(("t", 0, 6))
    assert tracker.committable() == {("t", 0): 7}
