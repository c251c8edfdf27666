"""The MongoDB store: activities, dead letters and progress in one database, one client per process."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pymongo import AsyncMongoClient

from activity_service.infrastructure.mongo.compat import quirks_of
from activity_service.infrastructure.mongo.delivery import MongoDeadLetterLog, MongoProgressLog
from activity_service.infrastructure.mongo.documents import Document
from activity_service.infrastructure.mongo.erasures import MongoErasureLog
from activity_service.infrastructure.mongo.repository import MongoActivityRepository
from activity_service.infrastructure.settings import MongoSettings
from activity_service.infrastructure.store import Store

log = logging.getLogger(__name__)

# Collections beside the activities, in the same database.
DEAD_LETTERS = "dead_letters"
PROGRESS = "consumer_progress"
ERASURES = "erasures"


@asynccontextmanager
async def open_mongo_store(
    settings: MongoSettings, *, read_timeout_ms: int | None = None, ping_timeout_ms: int = 2000
) -> AsyncIterator[Store]:
    """Connects, learns which server it is (compat.py), creates the missing indexes; closes on the way out.

    ``read_timeout_ms`` bounds every read of activities on the server (maxTimeMS). Readiness pings over
    a client of its own (one connection, ``ping_timeout_ms``), so that reads filling the main client's
    pool cannot make the process look unready."""
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        settings.uri, tz_aware=True, serverSelectionTimeoutMS=settings.timeout_ms, appname="activity-service"
    )
    pinger: AsyncMongoClient[Document] = AsyncMongoClient(
        settings.uri,
        maxPoolSize=1,
        serverSelectionTimeoutMS=ping_timeout_ms,
        connectTimeoutMS=ping_timeout_ms,
        timeoutMS=ping_timeout_ms,
        appname="activity-service-readiness",
    )

    async def ping() -> None:
        await pinger[settings.database].command("ping")

    try:
        database = client[settings.database]
        quirks = await quirks_of(database)
        activities = MongoActivityRepository(
            database[settings.collection], quirks, read_timeout_ms=read_timeout_ms
        )
        dead_letters = MongoDeadLetterLog(database[DEAD_LETTERS], quirks)
        await activities.ensure_indexes()
        await dead_letters.ensure_indexes()
        erasures = MongoErasureLog(database[ERASURES], quirks)
        await erasures.ensure_indexes()
        where = f"database {settings.database}, collection {settings.collection}"
        log.info("store: %s, %s", quirks.server, where)
        yield Store(
            kind="mongodb",
            server=quirks.server,
            where=where,
            activities=activities,
            counts=activities.counts,
            dead_letters=dead_letters,
            progress=MongoProgressLog(database[PROGRESS], quirks),
            erasures=erasures,
            ping=ping,
            apply_retention=activities.apply_retention,
        )
    finally:
        await pinger.close()
        await client.close()
