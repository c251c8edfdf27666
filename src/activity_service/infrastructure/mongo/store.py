"""The MongoDB store: activities, dead letters and progress in one database, one client per process."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pymongo import AsyncMongoClient

from activity_service.infrastructure.mongo.compat import quirks_of
from activity_service.infrastructure.mongo.delivery import MongoDeadLetterLog, MongoProgressLog
from activity_service.infrastructure.mongo.documents import Document
from activity_service.infrastructure.mongo.repository import MongoActivityRepository
from activity_service.infrastructure.settings import MongoSettings
from activity_service.infrastructure.store import Store

log = logging.getLogger(__name__)

# Collections beside the activities, in the same database.
DEAD_LETTERS = "dead_letters"
PROGRESS = "consumer_progress"


@asynccontextmanager
async def open_mongo_store(settings: MongoSettings) -> AsyncIterator[Store]:
    """Connects, learns which server it is (compat.py), creates the missing indexes; closes on the way out."""
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        settings.uri, tz_aware=True, serverSelectionTimeoutMS=settings.timeout_ms, appname="activity-service"
    )
    try:
        database = client[settings.database]
        quirks = await quirks_of(database)
        activities = MongoActivityRepository(database[settings.collection], quirks)
        dead_letters = MongoDeadLetterLog(database[DEAD_LETTERS], quirks)
        await activities.ensure_indexes()
        await dead_letters.ensure_indexes()
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
            ping=activities.ping,
            apply_retention=activities.apply_retention,
        )
    finally:
        await client.close()
