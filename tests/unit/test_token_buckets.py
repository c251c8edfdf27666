"""The in-process token buckets (GCRA) on a clock the test moves."""

from __future__ import annotations

import pytest

from activity_service.infrastructure.rate_limit import LocalBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_a_full_bucket_gives_its_burst_then_refuses_saying_when_to_retry() -> None:
    clock = Clock()
    buckets = LocalBuckets(rate=2.0, capacity=3, monotonic=clock)  # a token back every 0.5 s
    verdicts = [buckets.spend("a", 1) for _ in range(4)]
    assert [(v.allowed, v.remaining) for v in verdicts] == [(True, 2), (True, 1), (True, 0), (False, 0)]
    assert [v.reset_after for v in verdicts[:3]] == [0.5, 1.0, 1.5]
    assert verdicts[3].retry_after == pytest.approx(0.5)
    clock.now += 0.5
    assert buckets.spend("a", 1).allowed
    assert not buckets.spend("a", 1).allowed


def test_tokens_come_back_at_the_rate_and_never_beyond_the_capacity() -> None:
    clock = Clock()
    buckets = LocalBuckets(rate=1.0, capacity=5, monotonic=clock)
    assert buckets.spend("a", 5).allowed
    clock.now += 2.4  # two whole tokens back, the third not yet
    refused = buckets.spend("a", 3)
    assert (refused.allowed, refused.remaining) == (False, 2)
    assert refused.retry_after == pytest.approx(0.6)
    clock.now += 1_000
    assert buckets.spend("a", 5).remaining == 0
    assert not buckets.spend("a", 1).allowed


def test_a_refused_spend_takes_nothing_and_buckets_are_independent() -> None:
    clock = Clock()
    buckets = LocalBuckets(rate=1.0, capacity=4, monotonic=clock)
    assert buckets.spend("a", 3).allowed
    assert not buckets.spend("a", 2).allowed
    assert buckets.spend("a", 1).allowed  # the refused 2 were not taken
    assert buckets.spend("b", 4).allowed


def test_at_most_max_buckets_are_kept_the_least_recently_used_forgotten_as_full() -> None:
    clock = Clock()
    buckets = LocalBuckets(rate=0.001, capacity=1, monotonic=clock, max_buckets=2)
    for name in ("a", "b", "c"):
        assert buckets.spend(name, 1).allowed
    assert not buckets.spend("c", 1).allowed
    assert buckets.spend("a", 1).allowed  # "a" was forgotten: a fresh (full) bucket
