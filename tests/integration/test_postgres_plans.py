"""On PostgreSQL every list query the API sends is one range of the index made for it, read in index
order: EXPLAIN shows an index scan and no Sort node, for the first page, a deep cursor page, each filter
and a date range. (MongoDB's plans: test_query_plans.py.)"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from activity_service.domain.query import ActivityQuery, Position
from activity_service.infrastructure.postgres.migrations import migrate
from activity_service.infrastructure.postgres.repository import conditions, page_query
from tests.conftest import Stack
from tests.postgres import postgres_database

NOW = datetime(2026, 1, 1, tzinfo=UTC)
DEEP = Position(NOW - timedelta(minutes=15_000), "e-15000")
BY_TIME = "activities_tenant_timestamp_id"
BY_USER = "activities_tenant_user_timestamp_id"
BY_ACTION = "activities_tenant_action_timestamp_id"
# Each shape, and the indexes whose ordered range answers it. A common action (a fifth of all events here)
# may be read off the time index, filtering as it goes (about five rows read per row returned): still one
# ordered range, no sort; a rare one takes its own index.
SHAPES = {
    "first page": (ActivityQuery(limit=10), {BY_TIME}),
    "deep cursor page": (ActivityQuery(limit=10, after=DEEP), {BY_TIME}),
    "deep page number": (ActivityQuery(limit=10, page=50), {BY_TIME}),
    "userId": (ActivityQuery(user_id="u7", limit=10), {BY_USER}),
    "userId, deep cursor": (ActivityQuery(user_id="u7", limit=10, after=DEEP), {BY_USER}),
    "common action": (ActivityQuery(actions=("view",), limit=10), {BY_ACTION, BY_TIME}),
    "common action, deep cursor": (
        ActivityQuery(actions=("view",), limit=10, after=DEEP),
        {BY_ACTION, BY_TIME},
    ),
    "rare action": (ActivityQuery(actions=("refund",), limit=10), {BY_ACTION}),
    "rare action, deep cursor": (ActivityQuery(actions=("refund",), limit=10, after=DEEP), {BY_ACTION}),
    "date range": (
        ActivityQuery(start=NOW - timedelta(days=3), end=NOW - timedelta(days=2), limit=10),
        {BY_TIME},
    ),
}


@pytest.fixture(scope="module")
async def connection(stack: Stack, run_id: str) -> AsyncIterator[asyncpg.Connection]:
    async with postgres_database(stack.postgres_dsn, f"plans_{run_id}") as dsn:
        connection = await asyncpg.connect(dsn)
        try:
            await migrate(connection)
            # 50,000 events, one a minute, 50 users, 5 common actions and a rare one (one in a thousand):
            # enough that the planner's choice is its own.
            await connection.execute(
                """
                INSERT INTO activities (id, user_id, action, "timestamp", received_at, metadata)
                SELECT 'e-' || i, 'u' || (i % 50),
                       CASE WHEN i % 1000 = 0 THEN 'refund'
                            ELSE (ARRAY['view', 'buy', 'share', 'login', 'logout'])[1 + i % 5] END,
                       $1::timestamptz - i * interval '1 minute',
                       $1::timestamptz - i * interval '1 minute', '{}'
                FROM generate_series(1, 50000) AS i
                """,
                NOW,
            )
            await connection.execute("ANALYZE activities")
            yield connection
        finally:
            await connection.close()


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += nodes(child)
    return found


@pytest.mark.parametrize("shape", sorted(SHAPES))
async def test_each_list_query_is_an_index_range_with_no_sort(
    connection: asyncpg.Connection, shape: str
) -> None:
    query, indexes = SHAPES[shape]
    where, args = conditions(query)
    sql, params = page_query(query, where, args)
    [[raw]] = await connection.fetch(f"EXPLAIN (FORMAT JSON) {sql}", *params)
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    kinds = [n["Node Type"] for n in nodes(plan)]
    assert "Sort" not in kinds and "Seq Scan" not in kinds, kinds
    scans = [n for n in nodes(plan) if n["Node Type"] in ("Index Scan", "Index Only Scan")]
    assert len(scans) == 1 and scans[0]["Index Name"] in indexes, json.dumps(plan)[:2000]


async def test_the_planned_queries_return_what_they_say(connection: asyncpg.Connection) -> None:
    query = ActivityQuery(user_id="u7", limit=3)
    where, args = conditions(query)
    first = await connection.fetch(*_sql(page_query(query, where, args)))
    assert [r["id"] for r in first] == ["e-7", "e-57", "e-107", "e-157"]  # newest first, one more than asked
    after = replace(query, after=Position(first[2]["timestamp"], first[2]["id"]))
    rest = await connection.fetch(*_sql(page_query(after, *conditions(after))))
    assert [r["id"] for r in rest][:2] == ["e-157", "e-207"]


def _sql(built: tuple[str, list[Any]]) -> tuple[Any, ...]:
    return (built[0], *built[1])
