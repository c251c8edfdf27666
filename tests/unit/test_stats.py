"""Counts over time: buckets, their bounds, empty buckets, and retention by whole days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from activity_service.application.count_activities import CountActivities
from activity_service.application.purge_expired import PurgeExpiredActivities
from activity_service.application.read_freshness import ReadFreshness
from activity_service.domain.activity import Activity
from activity_service.domain.query import InvalidQuery
from activity_service.domain.stats import MAX_BUCKETS, CountQuery, Interval
from tests.fakes import FixedClock, InMemoryCounts, InMemoryProgressLog, InMemoryRepository

AT = datetime(2026, 11, 26, 10, 17, 42, 500000, tzinfo=UTC)


def test_each_interval_floors_to_its_utc_bucket() -> None:
    assert Interval.MINUTE.floor(AT) == datetime(2026, 11, 26, 10, 17, tzinfo=UTC)
    assert Interval.HOUR.floor(AT) == datetime(2026, 11, 26, 10, tzinfo=UTC)
    assert Interval.DAY.floor(AT) == datetime(2026, 11, 26, tzinfo=UTC)


def test_a_query_spans_from_the_bucket_of_its_start_to_the_bucket_of_its_end() -> None:
    query = CountQuery(Interval.HOUR, AT, AT + timedelta(hours=2, minutes=50))
    assert query.bucket_starts() == [datetime(2026, 11, 26, h, tzinfo=UTC) for h in (10, 11, 12, 13)]
    assert CountQuery(Interval.DAY, AT, AT).bucket_starts() == [datetime(2026, 11, 26, tzinfo=UTC)]


def test_at_most_a_thousand_buckets_are_answered_and_crossed_dates_are_refused() -> None:
    CountQuery(Interval.MINUTE, AT, AT + timedelta(minutes=MAX_BUCKETS - 1))
    with pytest.raises(InvalidQuery) as too_many:
        CountQuery(Interval.MINUTE, AT, AT + timedelta(minutes=MAX_BUCKETS))
    assert (
        too_many.value.errors[0].field == "interval"
        and "1001 minute buckets" in too_many.value.errors[0].message
    )
    with pytest.raises(InvalidQuery) as crossed:
        CountQuery(Interval.DAY, AT, AT - timedelta(days=1))
    assert crossed.value.errors[0].field == "startDate"


async def test_every_bucket_is_answered_the_empty_ones_with_zero() -> None:
    repository = InMemoryRepository()
    events = [
        Activity.record(id=f"e{i}", user_id="u", action=a, received_at=AT + timedelta(hours=h))
        for i, (h, a) in enumerate([(0, "view"), (0, "buy"), (2, "view")])
    ]
    await repository.add_many(events)
    counts = await CountActivities(
        InMemoryCounts(repository), ReadFreshness(InMemoryProgressLog(), "t", partitions=1)
    ).execute(CountQuery(Interval.HOUR, AT, AT + timedelta(hours=3), actions=("view", "buy"), by_action=True))
    assert [(b.total, dict(b.by_action)) for b in counts.buckets] == [
        (2, {"view": 1, "buy": 1}),
        (0, {"view": 0, "buy": 0}),
        (1, {"view": 1, "buy": 0}),
        (0, {"view": 0, "buy": 0}),
    ]
    assert counts.fresh_until is None


async def test_retention_removes_whole_days_only() -> None:
    repository = InMemoryRepository()
    now = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
    days_ago = [9, 8, 7, 6]  # retention of 7 days: the day that ended before now - 7 days goes, and earlier
    await repository.add_many(
        [
            Activity.record(
                id=f"d{d}",
                user_id="u",
                action="a",
                received_at=now - timedelta(days=d),
                timestamp=now - timedelta(days=d),
            )
            for d in days_ago
        ]
    )
    deleted = await PurgeExpiredActivities(repository, FixedClock(now), days=7).execute()
    assert deleted == 2
    assert repository.ids() == [
        "d6",
        "d7",
    ]  # d7 is 7 days old but its day has not ended 7 days ago
