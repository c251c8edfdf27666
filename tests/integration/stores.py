"""Opening each store on the real database for the contract suite, in a database of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pymongo import AsyncMongoClient

from activity_service.infrastructure.mongo.store import open_mongo_store
from activity_service.infrastructure.settings import MongoSettings
from activity_service.infrastructure.store import Store
from tests.conftest import Stack

KINDS = ["mongodb"]


@asynccontextmanager
async def opened(kind: str, stack: Stack, name: str) -> AsyncIterator[Store]:
    if kind == "mongodb":
        async with open_mongo_store(MongoSettings.explicit(uri=stack.mongo_uri, database=name)) as store:
            try:
                yield store
            finally:
                client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_uri)
                await client.drop_database(name)
                await client.close()
        return
    raise ValueError(f"no such store: {kind}")
