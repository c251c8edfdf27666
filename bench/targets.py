"""The databases a run stores into: FerretDB on SQLite (the local stack's MongoDB), PostgreSQL, and FerretDB
on that same PostgreSQL server (an instance the bench starts for itself, scenario 13).

A Target says which STORE the service processes get and how they and the bench reach the database of one
phase (``bench_<run>_<phase>``). On PostgreSQL each phase's database is created by the bench (the service
creates its schema in it, by its migrations) and dropped at the end of the run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from pydantic import SecretStr
from tests.postgres import drop_database

from activity_service.infrastructure.settings import MongoSettings, PostgresSettings, Settings

StoreKind = Literal["mongodb", "postgresql"]


@dataclass(frozen=True)
class Target:
    store: StoreKind
    label: str
    """How the results name it: ``FerretDB 1.24 (SQLite)``, ``PostgreSQL 15``..."""
    uri: str
    """A MongoDB URI, or the DSN of a PostgreSQL database the role can connect to (to create others)."""

    def env(self, database: str) -> dict[str, str]:
        """What a service process needs to store in ``database`` on this target."""
        if self.store == "postgresql":
            return {"STORE": "postgresql", "POSTGRES_DSN": dsn_of(self.uri, database)}
        return {"STORE": "mongodb", "MONGODB_URI": self.uri, "MONGODB_DATABASE": database}

    def apply(self, settings: Settings, database: str) -> Settings:
        """``settings`` pointed at ``database`` on this target (as the service processes see it)."""
        if self.store == "postgresql":
            postgres = PostgresSettings.explicit(dsn=SecretStr(dsn_of(self.uri, database)))
            return settings.model_copy(update={"store": "postgresql", "postgres": postgres})
        mongodb = MongoSettings.explicit(uri=self.uri, database=database)
        return settings.model_copy(update={"store": "mongodb", "mongodb": mongodb})


def dsn_of(dsn: str, database: str) -> str:
    """The same server, role and options, another database."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def database_of(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/") or "postgres"


async def create_database(dsn: str, database: str) -> None:
    """A fresh, empty database (the service migrates its schema into it at start-up)."""
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        await drop_database(connection, database)
        await connection.execute(f'CREATE DATABASE "{database}"')
    finally:
        await connection.close()


async def drop_pg_databases(dsn: str, prefix: str) -> list[str]:
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        sql = "SELECT datname FROM pg_database WHERE starts_with(datname, $1)"
        rows = await connection.fetch(sql, prefix)
        names = [r["datname"] for r in rows]
        for name in names:
            await drop_database(connection, name)
    finally:
        await connection.close()
    return names


@asynccontextmanager
async def pg_connection(dsn: str, database: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the bench's own to ``database``, with the service's jsonb codec."""
    from activity_service.infrastructure.postgres.store import _prepare

    connection = await asyncpg.connect(dsn_of(dsn, database), timeout=10)
    try:
        await _prepare(connection)
        yield connection
    finally:
        await connection.close()


async def pg_problem(dsn: str) -> str | None:
    try:
        connection = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return (
            f"PostgreSQL does not answer at {urlsplit(dsn).hostname}:{urlsplit(dsn).port or 5432} "
            f"({type(exc).__name__}: {exc}). Start the local stack with `make stack-up` "
            "(or set POSTGRES_DSN)."
        )
    try:
        await connection.fetchval("SELECT 1")
    finally:
        await connection.close()
    return None


async def pg_version(dsn: str) -> str:
    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        return f"PostgreSQL {await connection.fetchval('SHOW server_version')}"
    finally:
        await connection.close()
