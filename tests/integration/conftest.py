from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from activity_service.infrastructure.mongo.compat import ServerQuirks, quirks_of
from activity_service.infrastructure.store import Store
from tests.conftest import Stack
from tests.integration.stores import KINDS, opened


@pytest.fixture
async def database(stack: Stack, unique_name: str) -> AsyncIterator[Any]:
    """A database of the test's own on the real MongoDB-wire server, dropped afterwards."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_uri, tz_aware=True)
    try:
        yield client[unique_name]
    finally:
        await client.drop_database(unique_name)
        await client.close()


@pytest.fixture
async def quirks(database: Any) -> ServerQuirks:
    """What the server says it is (FerretDB here, MongoDB under testcontainers)."""
    return await quirks_of(database)


@pytest.fixture(params=KINDS)
async def store(request: pytest.FixtureRequest, stack: Stack, unique_name: str) -> AsyncIterator[Store]:
    """Each store in turn, opened as the service opens it, on a database of the test's own."""
    async with opened(request.param, stack, unique_name) as opened_store:
        yield opened_store
