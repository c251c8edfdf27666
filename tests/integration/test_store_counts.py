"""Counts over time on every store: exact as events are stored, redelivered, resent, replayed and purged.
Each test ends by checking the counts against the events the store holds, bucket by bucket."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from activity_service.domain.activity import Activity
from activity_service.domain.delivery import LogPosition
from activity_service.domain.query import ActivityQuery
from activity_service.domain.stats import CountQuery, Interval
from activity_service.infrastructure.store import Store
from tests.conftest import Stack
from tests.integration.stores import stored_without_counting

DAY = datetime(2026, 3, 10, tzinfo=UTC)
RANGE = (DAY - timedelta(days=5), DAY + timedelta(days=1))


def event(n: int, *, at: datetime, action: str = "view", user: str = "u1") -> Activity:
    return Activity.record(id=f"e{n:04d}", user_id=user, action=action, received_at=at, timestamp=at)


def positions(topic: str, partition: int, first: int, count: int) -> list[LogPosition]:
    return [LogPosition(topic, partition, first + i) for i in range(count)]


async def stored_events(store: Store) -> list[Activity]:
    page = await store.activities.find(
        ActivityQuery(start=RANGE[0], end=RANGE[1], limit=100, count_total=False)
    )
    found = list(page.items)
    while page.next_position is not None:
        page = await store.activities.find(
            ActivityQuery(
                start=RANGE[0], end=RANGE[1], limit=100, count_total=False, after=page.next_position
            )
        )
        found += page.items
    return found


async def assert_counts_match_what_is_stored(store: Store) -> None:
    events = await stored_events(store)
    for interval in Interval:
        if interval is Interval.MINUTE:  # 1,000 buckets at most: the day the minute tests use
            query = CountQuery(interval, DAY, DAY + timedelta(minutes=999), by_action=True)
        else:
            query = CountQuery(interval, *RANGE, by_action=True)
        expected_totals = Counter(
            interval.floor(e.timestamp) for e in events if query.first <= e.timestamp < query.after_last
        )
        expected_actions = Counter(
            (interval.floor(e.timestamp), e.action)
            for e in events
            if query.first <= e.timestamp < query.after_last
        )
        found = await store.counts.count(query)
        assert {b.start: b.total for b in found if b.total} == dict(expected_totals), interval
        assert {(b.start, a): n for b in found for a, n in b.by_action.items() if n} == dict(
            expected_actions
        ), interval


async def test_stored_events_are_counted_per_minute_hour_and_day(store: Store) -> None:
    batch = [
        event(i, at=DAY + timedelta(minutes=i * 7), action="buy" if i % 3 == 0 else "view") for i in range(30)
    ]
    await store.activities.add_many(batch, positions("t", 0, 0, 30))
    hours = await store.counts.count(CountQuery(Interval.HOUR, DAY, DAY + timedelta(hours=3), by_action=True))
    assert [(b.start, b.total) for b in hours] == [
        (DAY, 9),  # minutes 0..56
        (DAY + timedelta(hours=1), 9),  # 63..119
        (DAY + timedelta(hours=2), 8),  # 126..175
        (DAY + timedelta(hours=3), 4),  # 182..203
    ]
    assert hours[0].by_action == {"buy": 3, "view": 6}
    await assert_counts_match_what_is_stored(store)


async def test_filters_count_only_matching_events(store: Store) -> None:
    batch = [
        event(i, at=DAY + timedelta(hours=i % 5), action=["view", "buy", "share"][i % 3], user=f"u{i % 2}")
        for i in range(60)
    ]
    await store.activities.add_many(batch, positions("t", 0, 0, 60))
    query = CountQuery(Interval.DAY, DAY, DAY, actions=("buy", "share"), by_action=True)
    [day] = await store.counts.count(query)
    assert (day.total, dict(day.by_action)) == (40, {"buy": 20, "share": 20})
    [mine] = await store.counts.count(CountQuery(Interval.DAY, DAY, DAY, user_id="u1"))
    assert mine.total == 30
    [mine_buying] = await store.counts.count(
        CountQuery(Interval.DAY, DAY, DAY, user_id="u1", actions=("buy",))
    )
    assert mine_buying.total == sum(1 for e in batch if e.user_id == "u1" and e.action == "buy")
    assert await store.counts.count(CountQuery(Interval.DAY, DAY, DAY, user_id="nobody")) == []


async def test_a_redelivered_batch_is_counted_once(store: Store) -> None:
    batch = [event(i, at=DAY + timedelta(minutes=i)) for i in range(20)]
    where = positions("t", 1, 100, 20)
    await store.activities.add_many(batch, where)
    await store.activities.add_many(batch, where)  # redelivered after the commit was lost
    await store.activities.add_many(batch[5:] + [event(50, at=DAY)], where[5:] + [LogPosition("t", 1, 120)])
    [day] = await store.counts.count(CountQuery(Interval.DAY, DAY, DAY))
    assert day.total == 21
    await assert_counts_match_what_is_stored(store)


async def test_events_stored_just_before_a_crash_are_counted_when_their_batch_comes_back(
    store: Store, stack: Stack, unique_name: str
) -> None:
    batch = [event(i, at=DAY + timedelta(minutes=i)) for i in range(12)]
    where = positions("t", 2, 0, 12)
    # The crash: these events were written, their counts not (where the two are separate writes).
    await stored_without_counting(store, stack, unique_name, batch[:8], where[:8])
    await store.activities.add_many(batch, where)  # the whole batch is redelivered
    [day] = await store.counts.count(CountQuery(Interval.DAY, DAY, DAY))
    assert day.total == 12
    await assert_counts_match_what_is_stored(store)


async def test_a_resend_of_a_stored_event_from_elsewhere_in_the_log_is_not_counted(store: Store) -> None:
    first = event(1, at=DAY)
    await store.activities.add_many([first], [LogPosition("t", 0, 7)])
    await store.activities.add_many([first], [LogPosition("t", 0, 9)])  # the client sent it again
    await store.activities.add_many([first], [LogPosition("t.dlq", 0, 0)])  # a dead-letter replay of it
    await store.activities.add_many([first])  # a store call without positions
    [day] = await store.counts.count(CountQuery(Interval.DAY, DAY, DAY))
    assert day.total == 1


async def test_events_stored_by_a_replay_or_from_the_dead_letter_topic_are_counted(store: Store) -> None:
    await store.activities.add_many([event(1, at=DAY)], [LogPosition("t", 0, 0)])
    await store.activities.add_many([event(2, at=DAY)], [LogPosition("t.dlq", 3, 0)])  # fixed dead letter
    await store.activities.add_many(
        [event(3, at=DAY), event(1, at=DAY)], [LogPosition("t", 0, 5), LogPosition("t", 0, 0)]
    )
    [day] = await store.counts.count(CountQuery(Interval.DAY, DAY, DAY))
    assert day.total == 3
    await assert_counts_match_what_is_stored(store)


async def test_purging_whole_days_removes_their_events_and_their_counts(store: Store) -> None:
    old = [event(i, at=DAY - timedelta(days=3) + timedelta(hours=i)) for i in range(10)]
    kept = [event(100 + i, at=DAY + timedelta(hours=i)) for i in range(5)]
    await store.activities.add_many(old + kept, positions("t", 0, 0, 15))
    assert await store.activities.purge_before(DAY - timedelta(days=1)) == 10
    days = await store.counts.count(CountQuery(Interval.DAY, *RANGE))
    assert [(b.start, b.total) for b in days] == [(DAY, 5)]
    await assert_counts_match_what_is_stored(store)


async def test_counts_answer_for_many_buckets_at_once(store: Store) -> None:
    batch = [event(i, at=DAY + timedelta(minutes=i)) for i in range(200)]
    await store.activities.add_many(batch, positions("t", 0, 0, 200))
    minutes = await store.counts.count(CountQuery(Interval.MINUTE, DAY, DAY + timedelta(minutes=999)))
    assert len(minutes) == 200 and all(b.total == 1 for b in minutes)
