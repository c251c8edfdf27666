"""The PostgreSQL store: activities, their counts, dead letters, progress and erasures in one database, one
pool per process."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import orjson

from activity_service.infrastructure.postgres.counts import PostgresActivityCounts
from activity_service.infrastructure.postgres.delivery import PostgresDeadLetterLog, PostgresProgressLog
from activity_service.infrastructure.postgres.erasures import PostgresErasureLog
from activity_service.infrastructure.postgres.migrations import migrate
from activity_service.infrastructure.postgres.repository import PostgresActivityRepository
from activity_service.infrastructure.settings import PostgresSettings
from activity_service.infrastructure.store import Store

log = logging.getLogger(__name__)


async def _prepare(connection: asyncpg.Connection) -> None:
    """jsonb in and out as Python objects, through orjson (asyncpg's default is text)."""
    await connection.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=_dumps, decoder=orjson.loads, format="text"
    )


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


@asynccontextmanager
async def open_postgres_store(
    settings: PostgresSettings, *, read_timeout_ms: int | None = None, ping_timeout_ms: int = 2000
) -> AsyncIterator[Store]:
    """Connects, brings the schema up to date (migrations.py), and closes the pool on the way out.

    ``read_timeout_ms`` bounds every read of activities. Readiness pings over a pool of its own (one
    connection, made when first needed, ``ping_timeout_ms``), so that reads holding every connection of
    the main pool cannot make the process look unready."""
    timeout = settings.timeout_ms / 1000
    ping_timeout = ping_timeout_ms / 1000
    pool = await asyncpg.create_pool(
        settings.dsn.get_secret_value(),
        min_size=1,
        max_size=settings.pool_size,
        timeout=timeout,
        command_timeout=timeout,
        init=_prepare,
        server_settings={"application_name": "activity-service"},
    )
    pinger = await asyncpg.create_pool(
        settings.dsn.get_secret_value(),
        min_size=0,
        max_size=1,
        timeout=ping_timeout,
        command_timeout=ping_timeout,
        server_settings={"application_name": "activity-service-readiness"},
    )

    async def ping() -> None:
        async with pinger.acquire(timeout=ping_timeout) as connection:
            await connection.fetchval("SELECT 1")

    try:
        async with pool.acquire() as connection:
            await migrate(connection)
            version = await connection.fetchval("SHOW server_version")
        server = f"PostgreSQL {version}"
        where = f"database {connection_database(settings)}"
        log.info("store: %s, %s", server, where)
        activities = PostgresActivityRepository(pool, read_timeout_ms=read_timeout_ms)

        async def keep_everything(days: int) -> bool:
            return days == 0  # no TTL in PostgreSQL: the consumer purges (in batches along the index)

        yield Store(
            kind="postgresql",
            server=server,
            where=where,
            activities=activities,
            counts=PostgresActivityCounts(pool, read_timeout_ms=read_timeout_ms),
            dead_letters=PostgresDeadLetterLog(pool),
            progress=PostgresProgressLog(pool),
            erasures=PostgresErasureLog(pool),
            ping=ping,
            apply_retention=keep_everything,
            batches_at_once=True,
        )
    finally:
        await pinger.close()
        await pool.close()


def connection_database(settings: PostgresSettings) -> str:
    """The database name of the DSN, for logs (never the password)."""
    return urlsplit(settings.dsn.get_secret_value()).path.lstrip("/") or "(default)"
