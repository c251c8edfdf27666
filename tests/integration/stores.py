"""Opening each store on the real database for the contract suite, in a database of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from pymongo import AsyncMongoClient

from activity_service.domain.activity import Activity
from activity_service.domain.delivery import LogPosition
from activity_service.infrastructure.mongo.documents import to_document
from activity_service.infrastructure.mongo.store import open_mongo_store
from activity_service.infrastructure.postgres.store import open_postgres_store
from activity_service.infrastructure.settings import MongoSettings, PostgresSettings
from activity_service.infrastructure.store import Store
from tests.conftest import Stack
from tests.postgres import postgres_database

KINDS = ["mongodb", "postgresql"]


@asynccontextmanager
async def opened(kind: str, stack: Stack, name: str, **bounds: Any) -> AsyncIterator[Store]:
    """``bounds``: passed to the store's opener (read_timeout_ms, ping_timeout_ms)."""
    if kind == "mongodb":
        mongo = MongoSettings.explicit(uri=stack.mongo_uri, database=name)
        async with open_mongo_store(mongo, **bounds) as store:
            try:
                yield store
            finally:
                client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_uri)
                await client.drop_database(name)
                await client.close()
        return
    if kind == "postgresql":
        async with postgres_database(stack.postgres_dsn, name) as dsn:
            postgres = PostgresSettings.explicit(dsn=dsn, pool_size=bounds.pop("pool_size", 10))
            async with open_postgres_store(postgres, **bounds) as store:
                yield store
        return
    raise ValueError(f"no such store: {kind}")


async def stored_without_counting(
    store: Store, stack: Stack, name: str, activities: Sequence[Activity], positions: Sequence[LogPosition]
) -> None:
    """Leaves the store as a crash between writing events and counting them would: on MongoDB the events
    are written as the store writes them (with their positions) and nothing is counted; on PostgreSQL
    events and counts are one transaction, so a crash leaves nothing, and nothing is written."""
    if store.kind == "mongodb":
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_uri, tz_aware=True)
        try:
            documents = [to_document(a, p) for a, p in zip(activities, positions, strict=True)]
            await client[name]["activities"].insert_many(documents)
        finally:
            await client.close()
