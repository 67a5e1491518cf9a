"""capture.sampling: fixed rates, consistent hashing on a header, seeded random fallback."""

from __future__ import annotations

import pytest

from capture.sampling import Sampler
from shadow.config import SamplingConfig

KEYS = [f"user-{i}" for i in range(20_000)]


def keyed(rate: float, header: str = "x-user", seed: int | None = None) -> Sampler:
    """A sampler keyed on ``header``."""
    return Sampler(SamplingConfig(rate=rate, key_header=header), seed=seed)


@pytest.mark.parametrize("header", ["", "x-user"])
def test_rate_one_takes_everything_and_rate_zero_nothing(header: str) -> None:
    """Rate 1 always samples and rate 0 never does, keyed or not."""
    everything, nothing = keyed(1.0, header), keyed(0.0, header)
    for headers in ({}, {"x-user": "u1"}, {"x-user": ""}):
        assert everything.sample(headers) is True
        assert nothing.sample(headers) is False
    assert everything.sample_raw([(b"x-user", b"u1")]) is True
    assert nothing.sample_raw([(b"x-user", b"u1")]) is False


def test_the_same_key_gets_the_same_decision_on_every_sampler() -> None:
    """Independent samplers (other seeds, other processes) agree on every key."""
    first, second = keyed(0.3, seed=1), keyed(0.3, seed=2)
    decisions = [first.sample({"x-user": key}) for key in KEYS[:2_000]]
    assert decisions == [second.sample({"x-user": key}) for key in KEYS[:2_000]]
    assert decisions == [first.sample({"x-user": key}) for key in KEYS[:2_000]]


def test_the_share_of_keys_sampled_approximates_the_rate() -> None:
    """Of 20,000 distinct keys at rate 0.3, the share sampled is within 0.015 of 0.3."""
    sampler = keyed(0.3)
    share = sum(sampler.sample({"x-user": key}) for key in KEYS) / len(KEYS)
    assert share == pytest.approx(0.3, abs=0.015)  # about 4.6 standard deviations


def test_raising_the_rate_only_adds_keys() -> None:
    """A key sampled at rate 0.1 is still sampled at rate 0.5."""
    low, high = keyed(0.1), keyed(0.5)
    for key in KEYS[:5_000]:
        if low.sample({"x-user": key}):
            assert high.sample({"x-user": key})


def test_raw_headers_decide_like_the_mapping() -> None:
    """sample_raw on ASGI header pairs decides like sample on the latin-1 decoded mapping."""
    sampler = keyed(0.5, header="X-User")
    values = [key.encode() for key in KEYS[:2_000]] + [b"caf\xc3\xa9", b"\xff\xfe"]
    for value in values:
        raw = [(b"host", b"example"), (b"x-user", value)]
        assert sampler.sample_raw(raw) == sampler.sample({"x-user": value.decode("latin-1")})


def test_random_fallback_without_the_key_header_is_seeded() -> None:
    """Without the key header, decisions are random at the rate and repeat under one seed."""
    first, second = keyed(0.3, seed=42), keyed(0.3, seed=42)
    decisions = [first.sample({"other": "x"}) for _ in range(20_000)]
    assert decisions == [second.sample({"other": "x"}) for _ in range(20_000)]
    assert sum(decisions) / len(decisions) == pytest.approx(0.3, abs=0.015)


def test_an_empty_key_falls_back_to_random() -> None:
    """An empty header value is not one giant key: those requests are sampled at random."""
    for raw in (False, True):
        sampler = keyed(0.5, seed=7)
        decisions = [
            sampler.sample_raw([(b"x-user", b"")]) if raw else sampler.sample({"x-user": ""})
            for _ in range(2_000)
        ]
        assert 0.4 < sum(decisions) / len(decisions) < 0.6


def test_unkeyed_sampling_is_random_at_the_rate() -> None:
    """With no key header configured every request is an independent draw."""
    sampler = Sampler(SamplingConfig(rate=0.3), seed=3)
    decisions = [sampler.sample({"x-user": "same"}) for _ in range(20_000)]
    assert sum(decisions) / len(decisions) == pytest.approx(0.3, abs=0.015)
