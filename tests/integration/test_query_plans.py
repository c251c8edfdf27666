"""Which plan the database picks for each query shape the API sends.

On MongoDB every filter + sort (+ keyset) must be an index scan on the index made for it. FerretDB 1.24
on SQLite pushes none of them down; the test records that, so a FerretDB upgrade that starts pushing
down shows up here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from activity_service.domain.activity import Activity
from activity_service.domain.query import ActivityQuery, Position
from activity_service.infrastructure.mongo.repository import (
    SORT,
    MongoActivityRepository,
    filter_for,
    keyset_filter,
)
from tests.conftest import Stack

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SHAPES = {
    "timestamp_id": ActivityQuery(start=NOW),
    "userId_timestamp_id": ActivityQuery(user_id="u1"),
    "action_timestamp_id": ActivityQuery(actions=("view",)),
}


@pytest.fixture
async def collection(stack: Stack, unique_name: str) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_uri, tz_aware=True)
    collection = client[unique_name]["activities"]
    repository = MongoActivityRepository(collection)
    await repository.ensure_indexes()
    await repository.add_many(
        [Activity.record(id=f"e{i}", user_id=f"u{i % 5}", action="view", received_at=NOW) for i in range(50)]
    )
    try:
        yield collection
    finally:
        await client.drop_database(unique_name)
        await client.close()


async def is_ferretdb(collection: Any) -> bool:
    info = await collection.database.client.admin.command("buildInfo")
    return "ferretdbVersion" in info


@pytest.mark.parametrize("index", sorted(SHAPES))
@pytest.mark.parametrize("keyset", [False, True], ids=["first-page", "cursor-page"])
async def test_each_query_shape_uses_its_index_where_the_server_can(
    collection: Any, index: str, keyset: bool
) -> None:
    query = SHAPES[index]
    criteria = keyset_filter(filter_for(query), Position(NOW, "e25") if keyset else None)
    plan = await collection.find(criteria).sort(SORT).limit(11).explain()
    text = json.dumps(plan, default=str)
    if await is_ferretdb(collection):
        assert plan["filterPushdown"] is False and plan["sortPushdown"] is False
    else:
        assert "IXSCAN" in text and index in text, text[:2000]
        assert "COLLSCAN" not in text
