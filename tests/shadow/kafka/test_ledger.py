"""The delivery ledger: unconfirmed records per partition, bounded, reset when offsets go back."""

from __future__ import annotations

import pytest

from shadow.kafka.ledger import DeliveryLedger, Pending


def test_confirm_forgets_records_below_the_end_and_pending_spans_the_rest() -> None:
    ledger = DeliveryLedger()
    for offset in range(5):
        assert ledger.acknowledge(0, offset, b"k%d" % offset, b"v")
    assert ledger.acknowledge(1, 7, b"x", b"vv")
    assert ledger.confirm(0, 3) == 3
    assert ledger.pending() == {0: Pending(3, 4, b"k4"), 1: Pending(7, 7, b"x")}
    assert (ledger.records, ledger.size) == (3, 2 * 3 + 3)


def test_an_offset_at_or_below_one_acknowledged_is_refused_and_take_all_starts_anew() -> None:
    ledger = DeliveryLedger()
    ledger.acknowledge(0, 10, b"a", b"1")
    ledger.acknowledge(1, 4, b"b", b"2")
    ledger.confirm(0, 11)
    assert ledger.went_backwards(0, 10)  # confirmed, and still remembered
    assert not ledger.acknowledge(0, 0, b"c", b"3")
    assert ledger.take_all() == [(b"b", b"2")]
    assert (ledger.records, ledger.epoch) == (0, 1)
    assert ledger.acknowledge(0, 0, b"c", b"3")  # the new log starts at 0


def test_past_the_bounds_the_oldest_are_forgotten_and_counted_unchecked() -> None:
    ledger = DeliveryLedger(max_records=3, max_bytes=100)
    for offset in range(4):
        ledger.acknowledge(offset % 2, offset, b"k", b"v")
    assert (ledger.records, ledger.unchecked) == (3, 1)
    assert [k for k, _ in ledger.take_all()] == [b"k"] * 3
    small = DeliveryLedger(max_bytes=10)
    small.acknowledge(0, 0, b"k", b"x" * 20)
    assert (small.records, small.unchecked) == (0, 1)
    with pytest.raises(ValueError, match="max_records has value 0"):
        DeliveryLedger(max_records=0)
