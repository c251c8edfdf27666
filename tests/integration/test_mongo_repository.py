"""MongoActivityRepository against the real database (FerretDB locally, MongoDB under testcontainers)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from activity_service.domain.activity import Activity
from activity_service.domain.query import ActivityQuery
from activity_service.infrastructure.mongo.compat import ServerQuirks
from activity_service.infrastructure.mongo.repository import MongoActivityRepository

BASE = datetime(2026, 3, 1, tzinfo=UTC)


def make(
    n: int, *, user: str = "u1", action: str = "view", minutes: int | None = None, **extra: Any
) -> Activity:
    at = BASE + timedelta(minutes=n if minutes is None else minutes)
    return Activity.record(id=f"e{n:04d}", user_id=user, action=action, received_at=at, timestamp=at, **extra)


@pytest.fixture
async def repository(database: Any, quirks: ServerQuirks) -> MongoActivityRepository:
    repo = MongoActivityRepository(database["activities"], quirks)
    await repo.ensure_indexes()
    return repo


async def test_storing_is_idempotent_by_event_id(repository: MongoActivityRepository) -> None:
    first = await repository.add_many([make(1), make(2)])
    again = await repository.add_many([make(2), make(3), make(1)])
    assert (first.inserted, first.duplicates) == (2, 0)
    assert (again.inserted, again.duplicates, dict(again.rejected)) == (1, 2, {})
    page = await repository.find(ActivityQuery(limit=100))
    assert page.total == 3


async def test_an_activity_reads_back_equal(repository: MongoActivityRepository) -> None:
    activity = make(
        7,
        metadata={"path": "/x", "n": 3, "nested": {"list": [1, "two", {"k": None}]}, "f": 0.5},
        ip_address="198.51.100.4",
        sent_at=BASE + timedelta(minutes=8),
    )
    await repository.add_many([activity])
    assert await repository.get(activity.id) == activity
    assert await repository.get("missing") is None


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param({"matrix": [[1, 2], [3, 4]]}, id="nested-arrays"),  # FerretDB refuses, MongoDB stores
        pytest.param({"blob": "x" * (17 * 1024 * 1024)}, id="over-16MiB"),  # MongoDB refuses, FerretDB stores
    ],
)
async def test_every_document_gets_a_verdict_even_a_shape_some_stores_refuse(
    repository: MongoActivityRepository, metadata: dict[str, Any]
) -> None:
    odd = make(2, metadata=metadata)
    outcome = await repository.add_many([make(1), odd, make(3)])
    assert outcome.inserted + outcome.duplicates + len(outcome.rejected) == 3
    assert set(outcome.rejected) <= {odd.id}
    assert (await repository.get(odd.id) is None) == (odd.id in outcome.rejected)
    assert await repository.get("e0001") is not None and await repository.get("e0003") is not None


async def test_find_filters_sorts_and_pages(repository: MongoActivityRepository) -> None:
    activities = [make(i, user=f"u{i % 3}", action="buy" if i % 2 else "view") for i in range(30)]
    # Same timestamp for two events: the id breaks the tie, newest id first.
    activities.append(make(100, user="u0", action="view", minutes=29))
    await repository.add_many(activities)

    everything = await repository.find(ActivityQuery(limit=100))
    assert [a.id for a in everything.items][:3] == ["e0100", "e0029", "e0028"]
    assert everything.total == 31

    page = await repository.find(ActivityQuery(user_id="u1", page=2, limit=4))
    expected = sorted((a for a in activities if a.user_id == "u1"), key=lambda a: a.timestamp, reverse=True)
    assert [a.id for a in page.items] == [a.id for a in expected[4:8]]
    assert (page.total, page.total_pages) == (10, 3)

    buys = await repository.find(ActivityQuery(actions=("buy",), limit=100))
    assert buys.total == 15 and all(a.action == "buy" for a in buys.items)
    either = await repository.find(ActivityQuery(actions=("buy", "view"), limit=100))
    assert either.total == 31

    window = await repository.find(
        ActivityQuery(start=BASE + timedelta(minutes=10), end=BASE + timedelta(minutes=12), limit=100)
    )
    assert sorted(a.id for a in window.items) == ["e0010", "e0011", "e0012"]  # both bounds inclusive

    combined = await repository.find(
        ActivityQuery(user_id="u2", actions=("view",), start=BASE + timedelta(minutes=5), limit=100)
    )
    assert sorted(a.id for a in combined.items) == ["e0008", "e0014", "e0020", "e0026"]


async def test_indexes_are_created_idempotently(repository: MongoActivityRepository, database: Any) -> None:
    await repository.ensure_indexes()
    await repository.ping()
    names = {i["name"] async for i in await database["activities"].list_indexes()}
    assert {"timestamp_id", "userId_timestamp_id", "action_timestamp_id"} <= names


async def test_a_keyset_walk_over_ties_and_filters_matches_the_full_order(
    repository: MongoActivityRepository,
) -> None:
    activities = [make(i, user=f"u{i % 2}", minutes=i // 4) for i in range(41)]  # 4 events per timestamp
    await repository.add_many(activities)
    for query in (
        ActivityQuery(limit=5, count_total=False),
        ActivityQuery(user_id="u1", limit=3, count_total=False),
    ):
        expected = sorted(
            (a for a in activities if query.user_id in (None, a.user_id)),
            key=lambda a: (a.timestamp, a.id),
            reverse=True,
        )
        seen: list[str] = []
        position = None
        while True:
            page = await repository.find(replace(query, after=position))
            assert page.total is None
            seen += [a.id for a in page.items]
            position = page.next_position
            if position is None:
                break
        assert seen == [a.id for a in expected]


async def test_filter_values_are_matched_as_literals_never_as_operators(
    repository: MongoActivityRepository,
) -> None:
    await repository.add_many([make(i, user=f"u{i % 2}") for i in range(6)])
    for literal in ('{"$gt": ""}', "{'$ne': null}", "u1' || '1'=='1", "$where", "u.*"):
        for query in (ActivityQuery(user_id=literal), ActivityQuery(actions=(literal,))):
            page = await repository.find(query)
            assert (page.total, list(page.items)) == (0, []), literal
    assert (await repository.find(ActivityQuery(user_id="u1"))).total == 3
