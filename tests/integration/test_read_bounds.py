"""Read bounds on the real databases, for each store: a read past its time limit is stopped there and
raises QueryTimedOut; totals are counted up to a cap; readiness pings over a connection of its own."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from activity_service.domain.activity import Activity
from activity_service.domain.errors import QueryTimedOut
from activity_service.domain.query import ActivityQuery
from activity_service.domain.stats import CountQuery, Interval
from tests.conftest import Stack
from tests.integration.stores import KINDS, opened

BASE = datetime(2026, 3, 1, tzinfo=UTC)


def events(count: int, users: int = 50) -> list[Activity]:
    return [
        Activity.record(
            id=f"e{n:06d}",
            user_id=f"u{n % users}",
            action="view",
            received_at=BASE + timedelta(seconds=n),
            timestamp=BASE + timedelta(seconds=n),
            metadata={"n": n, "path": "/pricing"},
        )
        for n in range(count)
    ]


async def fill(store: object, activities: list[Activity]) -> None:
    for start in range(0, len(activities), 2000):
        await store.activities.add_many(activities[start : start + 2000])  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_read_past_its_time_limit_is_stopped_and_says_so(
    kind: str, stack: Stack, unique_name: str
) -> None:
    async with opened(kind, stack, unique_name, read_timeout_ms=1) as store:
        await fill(store, events(20_000 if kind == "mongodb" else 60_000, users=2))
        with pytest.raises(QueryTimedOut):
            await store.activities.find(ActivityQuery(limit=100))
        # The counts over time of one user are read from the events too: bounded the same way.
        with pytest.raises(QueryTimedOut):
            await store.counts.count(CountQuery(Interval.DAY, BASE, BASE + timedelta(days=2), user_id="u1"))
    async with opened(kind, stack, f"{unique_name}_fast", read_timeout_ms=5000) as store:
        await fill(store, events(100))
        page = await store.activities.find(ActivityQuery(limit=10))
        assert page.total == 100 and len(page.items) == 10


@pytest.mark.parametrize("kind", KINDS)
async def test_totals_are_counted_up_to_the_cap_and_say_when_they_stop(
    kind: str, stack: Stack, unique_name: str
) -> None:
    async with opened(kind, stack, unique_name) as store:
        await fill(store, events(30))
        capped = await store.activities.find(ActivityQuery(limit=5, count_limit=10))
        assert (capped.total, capped.total_capped, len(capped.items)) == (10, True, 5)
        exact = await store.activities.find(ActivityQuery(limit=5, count_limit=30))
        assert (exact.total, exact.total_capped) == (30, False)
        filtered = await store.activities.find(ActivityQuery(user_id="u1", limit=5, count_limit=10))
        assert (filtered.total, filtered.total_capped) == (1, False)


async def test_readiness_answers_while_reads_hold_every_pooled_connection(
    stack: Stack, unique_name: str
) -> None:
    async with opened("postgresql", stack, unique_name, pool_size=1, ping_timeout_ms=2000) as store:
        pool = store.activities._pool  # type: ignore[attr-defined]  # the main pool, held as a long read would
        async with pool.acquire():
            await asyncio.wait_for(store.ping(), timeout=3)
