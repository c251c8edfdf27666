"""A PostgreSQL database of a test's own: created on the server POSTGRES_DSN points at, dropped after."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def drop_database(admin: asyncpg.Connection, name: str) -> None:
    """Drops ``name``, ending the sessions still in it.

    ``WITH (FORCE)`` refuses outright when an autovacuum worker is in the database and we are not a
    superuser (the worker's role is none we are a member of); a plain DROP asks autovacuum to leave
    and waits up to 5 s for it, so that is the fallback, tried until the worker has gone.
    """
    for attempt in range(10):
        try:
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except asyncpg.InsufficientPrivilegeError:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            return
        except asyncpg.ObjectInUseError:
            if attempt == 9:
                raise
            await asyncio.sleep(0.5)


@asynccontextmanager
async def postgres_database(dsn: str, name: str) -> AsyncIterator[str]:
    """Yields the DSN of a new, empty database ``name`` (lower case, as PostgreSQL folds it)."""
    name = name.lower()
    admin = await asyncpg.connect(dsn)
    try:
        await drop_database(admin, name)
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield with_database(dsn, name)
        finally:
            await drop_database(admin, name)
    finally:
        await admin.close()
