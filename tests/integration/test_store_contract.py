"""The store contract: every store port, the same tests for every store (tests/integration/stores.py opens
each on the real database: FerretDB here, MongoDB under testcontainers; PostgreSQL)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from activity_service.domain.activity import Activity
from activity_service.domain.delivery import DeadLetter, PartitionProgress
from activity_service.domain.query import ActivityQuery, Position
from activity_service.infrastructure.store import Store

BASE = datetime(2026, 3, 1, tzinfo=UTC)


def make(
    n: int, *, user: str = "u1", action: str = "view", minutes: int | None = None, **extra: Any
) -> Activity:
    at = BASE + timedelta(minutes=n if minutes is None else minutes)
    return Activity.record(id=f"e{n:04d}", user_id=user, action=action, received_at=at, timestamp=at, **extra)


def vars_of(activity: Activity) -> dict[str, Any]:
    return {name: getattr(activity, name) for name in activity.__dataclass_fields__}


async def test_storing_is_idempotent_by_event_id(store: Store) -> None:
    first = await store.activities.add_many([make(1), make(2)])
    again = await store.activities.add_many([make(2), make(3), make(1)])
    assert (first.inserted, first.duplicates) == (2, 0)
    assert (again.inserted, again.duplicates, dict(again.rejected)) == (1, 2, {})
    assert (await store.activities.find(ActivityQuery(limit=100))).total == 3


async def test_a_batch_that_repeats_an_id_stores_it_once(store: Store) -> None:
    outcome = await store.activities.add_many([make(1), make(1), make(2)])
    assert (outcome.inserted, outcome.duplicates) == (2, 1)


async def test_an_activity_reads_back_equal_with_every_field(store: Store) -> None:
    activity = make(
        7,
        metadata={
            "path": "/x",
            "n": 3,
            "nested": {"list": [1, "two", {"k": None}]},
            "f": 0.5,
            "big": 2**62,
            "u": "é✓",
        },
        ip_address="198.51.100.4",
        sent_at=BASE + timedelta(minutes=8),
        trace_id="0af7651916cd43dd8448eb211c80319c",
    )
    await store.activities.add_many([activity])
    assert await store.activities.get(activity.id) == activity
    assert await store.activities.get("missing") is None


async def test_times_keep_milliseconds_exactly(store: Store) -> None:
    at = datetime(2026, 3, 1, 12, 30, 45, 123000, tzinfo=UTC)
    activity = Activity.record(
        id="ms", user_id="u", action="a", received_at=at, timestamp=at - timedelta(milliseconds=1)
    )
    await store.activities.add_many([activity])
    stored = await store.activities.get("ms")
    assert stored is not None and (stored.timestamp, stored.received_at) == (activity.timestamp, at)


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param({"matrix": [[1, 2], [3, 4]]}, id="nested-arrays"),  # FerretDB refuses, others store
        pytest.param({"blob": "x" * (17 * 1024 * 1024)}, id="over-16MiB"),  # MongoDB refuses, others store
        pytest.param({"text": "a\u0000b"}, id="nul-in-a-string"),  # PostgreSQL's jsonb refuses, others store
    ],
)
async def test_every_activity_gets_a_verdict_even_a_shape_some_stores_refuse(
    store: Store, metadata: dict[str, Any]
) -> None:
    # Built as a store reads one back (no input rule): the API no longer accepts NUL in strings, but an
    # event accepted before that rule may still be on the topic, and the store must still give a verdict.
    odd = Activity.restore(**{**vars_of(make(2)), "metadata": metadata})
    outcome = await store.activities.add_many([make(1), odd, make(3)])
    assert outcome.inserted + outcome.duplicates + len(outcome.rejected) == 3
    assert set(outcome.rejected) <= {odd.id}
    assert (await store.activities.get(odd.id) is None) == (odd.id in outcome.rejected)
    assert await store.activities.get("e0001") is not None and await store.activities.get("e0003") is not None


async def test_find_filters_sorts_and_pages(store: Store) -> None:
    activities = [make(i, user=f"u{i % 3}", action="buy" if i % 2 else "view") for i in range(30)]
    activities.append(make(100, user="u0", action="view", minutes=29))  # a tie on time: the id decides
    await store.activities.add_many(activities)
    find = store.activities.find

    everything = await find(ActivityQuery(limit=100))
    assert [a.id for a in everything.items][:3] == ["e0100", "e0029", "e0028"]
    assert everything.total == 31

    page = await find(ActivityQuery(user_id="u1", page=2, limit=4))
    expected = sorted((a for a in activities if a.user_id == "u1"), key=lambda a: a.timestamp, reverse=True)
    assert [a.id for a in page.items] == [a.id for a in expected[4:8]]
    assert (page.total, page.total_pages, page.has_more) == (10, 3, True)

    buys = await find(ActivityQuery(actions=("buy",), limit=100))
    assert buys.total == 15 and all(a.action == "buy" for a in buys.items)
    assert (await find(ActivityQuery(actions=("buy", "view"), limit=100))).total == 31

    window = await find(
        ActivityQuery(start=BASE + timedelta(minutes=10), end=BASE + timedelta(minutes=12), limit=100)
    )
    assert sorted(a.id for a in window.items) == ["e0010", "e0011", "e0012"]  # both bounds inclusive

    combined = await find(
        ActivityQuery(user_id="u2", actions=("view",), start=BASE + timedelta(minutes=5), limit=100)
    )
    assert sorted(a.id for a in combined.items) == ["e0008", "e0014", "e0020", "e0026"]
    uncounted = await find(ActivityQuery(limit=5, count_total=False))
    assert uncounted.total is None and len(uncounted.items) == 5 and uncounted.has_more


async def test_a_keyset_walk_over_ties_and_filters_matches_the_full_order(store: Store) -> None:
    activities = [make(i, user=f"u{i % 2}", minutes=i // 4) for i in range(41)]  # 4 events per timestamp
    await store.activities.add_many(activities)
    for query in (
        ActivityQuery(limit=5, count_total=False),
        ActivityQuery(user_id="u1", limit=3, count_total=False),
        ActivityQuery(
            start=BASE + timedelta(minutes=2), end=BASE + timedelta(minutes=7), limit=4, count_total=False
        ),
    ):
        expected = sorted(
            (
                a
                for a in activities
                if query.user_id in (None, a.user_id)
                and (query.start is None or a.timestamp >= query.start)
                and (query.end is None or a.timestamp <= query.end)
            ),
            key=lambda a: (a.timestamp, a.id),
            reverse=True,
        )
        seen: list[str] = []
        position: Position | None = None
        while True:
            page = await store.activities.find(replace(query, after=position))
            assert page.total is None
            seen += [a.id for a in page.items]
            position = page.next_position
            if position is None:
                break
        assert seen == [a.id for a in expected]


async def test_filter_values_are_matched_as_literals_never_as_operators(store: Store) -> None:
    await store.activities.add_many([make(i, user=f"u{i % 2}") for i in range(6)])
    for literal in (
        '{"$gt": ""}',
        "{'$ne': null}",
        "u1' OR '1'='1",
        "u1'; DROP TABLE activities; --",
        "$where",
        "u.*",
        "%",
    ):
        for query in (ActivityQuery(user_id=literal), ActivityQuery(actions=(literal,))):
            page = await store.activities.find(query)
            assert (page.total, list(page.items)) == (0, []), literal
    assert (await store.activities.find(ActivityQuery(user_id="u1"))).total == 3


async def test_purge_removes_only_events_of_the_days_before_the_cutoff(store: Store) -> None:
    await store.activities.add_many([make(i, minutes=i * 360) for i in range(10)])  # four a day
    cutoff = BASE + timedelta(days=1)  # the start of a UTC day, as retention passes it
    assert await store.activities.purge_before(cutoff) == 4
    assert await store.activities.purge_before(cutoff) == 0
    remaining = await store.activities.find(ActivityQuery(limit=100))
    assert sorted(a.id for a in remaining.items) == [f"e{i:04d}" for i in range(4, 10)]


async def test_the_store_answers_its_ping(store: Store) -> None:
    await store.ping()


async def test_progress_never_moves_back(store: Store) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    ahead = PartitionProgress("t", 0, 50, now, True, now)
    await store.progress.record([ahead, PartitionProgress("t", 1, 5, None, False, now)])
    await store.progress.record(
        [PartitionProgress("t", 0, 40, now - timedelta(hours=1), False, now + timedelta(seconds=1))]
    )
    by_partition = {p.partition: p for p in await store.progress.read("t")}
    assert by_partition[0] == ahead
    assert by_partition[1].last_received_at is None
    forward = PartitionProgress("t", 1, 9, None, True, now + timedelta(seconds=2))
    await store.progress.record([forward])
    assert {p.partition: p for p in await store.progress.read("t")}[1] == forward
    assert await store.progress.read("other") == []


async def test_a_known_receipt_time_is_kept_when_a_later_record_does_not_know_it(store: Store) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    await store.progress.record([PartitionProgress("t", 0, 10, now - timedelta(minutes=1), False, now)])
    await store.progress.record([PartitionProgress("t", 0, 12, None, True, now + timedelta(seconds=1))])
    [kept] = await store.progress.read("t")
    assert (kept.next_offset, kept.last_received_at, kept.caught_up) == (12, now - timedelta(minutes=1), True)


async def test_dead_letter_records_are_idempotent_and_can_be_forgotten(store: Store) -> None:
    letter = DeadLetter("t:0:7", "evt-7", "InvalidActivity", "userId: empty", datetime.now(UTC))
    await store.dead_letters.add(letter)
    await store.dead_letters.add(letter)
    await store.dead_letters.add(
        DeadLetter("t:0:8", None, "UndecodableMessage", "not JSON", datetime.now(UTC))
    )
    assert await store.dead_letters.has_event("evt-7")
    assert not await store.dead_letters.has_event("evt-8")
    await store.dead_letters.forget(["evt-7", "never-there"])
    assert not await store.dead_letters.has_event("evt-7")
    await store.dead_letters.forget([])


async def test_retention_is_applied_by_the_database_or_left_to_the_consumer(store: Store) -> None:
    itself = await store.apply_retention(7)
    assert isinstance(itself, bool)
    assert await store.apply_retention(0) is True, "keeping everything needs no purge"
