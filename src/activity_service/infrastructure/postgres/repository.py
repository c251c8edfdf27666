"""ActivityRepository on PostgreSQL: idempotent inserts by primary key (tenant, id), keyset pages as
row-value ranges.

Every list query is one range of the index made for its filter (each leads with the tenant), read in
index order: ``("timestamp", id) < ($t, $i)`` continues a walk where the last page ended, so page 10,000
costs what page 1 costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from activity_service.domain.activity import Activity, EventKey
from activity_service.domain.delivery import LogPosition
from activity_service.domain.erasure import Erasure
from activity_service.domain.errors import QueryTimedOut, StoreUnavailable
from activity_service.domain.ports import StoreOutcome
from activity_service.domain.query import ActivityPage, ActivityQuery
from activity_service.infrastructure.postgres.rows import SELECT, from_row
from activity_service.infrastructure.postgres.writes import ERASE, PURGE, TENANTS, Unencodable, insert

ORDER = 'ORDER BY "timestamp" DESC, id DESC'
PURGE_BATCH = 10_000

# What means the database could not be reached or stopped answering: the caller may retry.
UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
)


# A read whose value holds U+0000, which PostgreSQL's text cannot hold (the server refuses the statement):
# nothing stored can match it, so the read finds nothing rather than failing.
MATCHES_NOTHING = asyncpg.CharacterNotInRepertoireError

# A read past its time limit: asyncpg's own timeout (it cancels the statement on the server), or the
# server's statement_timeout when one is set for the role.
READ_TIMED_OUT = (TimeoutError, asyncpg.QueryCanceledError)

# A batch holding a value the database cannot store (e.g. a \u0000 in a string), or JSON cannot carry.
UNSTORABLE = (asyncpg.DataError, Unencodable)


class PostgresActivityRepository:
    def __init__(self, pool: asyncpg.Pool, *, read_timeout_ms: int | None = None) -> None:
        """``read_timeout_ms``: every read, at most (asyncpg cancels it on the server then: QueryTimedOut)."""
        self._pool = pool
        self._read_s = None if read_timeout_ms is None else read_timeout_ms / 1000

    async def add_many(
        self, activities: Sequence[Activity], positions: Sequence[LogPosition] | None = None
    ) -> StoreOutcome:
        """Events and their counts in one statement: exact without positions (a transaction is all)."""
        try:
            async with self._pool.acquire() as connection:
                inserted, conflicts = await insert(connection, activities)
        except UNSTORABLE:
            # A value this database cannot hold (e.g. a \\u0000 inside a jsonb string) fails the whole
            # statement: find which, one by one (rare), and refuse only those.
            return await self._add_one_by_one(activities)
        return StoreOutcome(inserted=inserted, duplicates=len(activities) - inserted, conflicts=conflicts)

    async def _add_one_by_one(self, activities: Sequence[Activity]) -> StoreOutcome:
        inserted = 0
        rejected: dict[EventKey, str] = {}
        conflicts: list[EventKey] = []
        async with self._pool.acquire() as connection:
            for activity in activities:
                try:
                    one, conflicting = await insert(connection, [activity])
                except UNSTORABLE as exc:
                    rejected[activity.key] = f"{type(exc).__name__}: {exc}"[:500]
                    continue
                inserted += one
                conflicts += conflicting
        return StoreOutcome(
            inserted=inserted,
            duplicates=len(activities) - inserted - len(rejected),
            rejected=rejected,
            conflicts=conflicts,
        )

    async def get(self, tenant: str, activity_id: str) -> Activity | None:
        row = await self._fetchrow(
            f"SELECT {SELECT} FROM activities WHERE tenant = $1 AND id = $2", tenant, activity_id
        )
        return None if row is None else from_row(row)

    async def erase(self, erasure: Erasure) -> int:
        """One statement (so one transaction): the events and their counts go together."""
        async with self._pool.acquire() as connection:
            return int(
                await connection.fetchval(ERASE, erasure.tenant, erasure.user_id, erasure.requested_at)
            )

    async def find(self, query: ActivityQuery) -> ActivityPage:
        where, args = conditions(query)
        page_sql, page_args = page_query(query, where, args)
        try:
            async with self._pool.acquire(timeout=self._read_s) as connection:
                rows = await connection.fetch(page_sql, *page_args, timeout=self._read_s)
                total = None
                if query.count_total:
                    count_sql, count_args = count_query(where, args, query.count_limit)
                    total = await connection.fetchval(count_sql, *count_args, timeout=self._read_s)
        except MATCHES_NOTHING:
            rows, total = [], 0 if query.count_total else None
        except READ_TIMED_OUT as exc:
            raise QueryTimedOut(f"{type(exc).__name__}: {exc}") from exc
        except UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc)) from exc
        capped = total is not None and query.count_limit is not None and total > query.count_limit
        return ActivityPage(
            items=[from_row(r) for r in rows[: query.limit]],
            total=query.count_limit if capped else total,
            page=query.page,
            limit=query.limit,
            has_more=len(rows) > query.limit,
            total_capped=capped,
        )

    async def purge_before(self, cutoff: datetime) -> int:
        """Tenant by tenant, in batches along its time index, so that no statement holds many locks for
        long."""
        deleted = 0
        async with self._pool.acquire() as connection:
            for tenant in [r["tenant"] for r in await connection.fetch(TENANTS)]:
                while True:
                    count = int(await connection.fetchval(PURGE, tenant, cutoff, PURGE_BATCH))
                    deleted += count
                    if count < PURGE_BATCH:
                        break
            await connection.execute("DELETE FROM activity_counts WHERE total <= 0")
        return deleted

    async def ping(self) -> None:
        async with self._pool.acquire() as connection:
            await connection.fetchval("SELECT 1")

    async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        try:
            async with self._pool.acquire(timeout=self._read_s) as connection:
                return await connection.fetchrow(sql, *args, timeout=self._read_s)
        except MATCHES_NOTHING:
            return None
        except READ_TIMED_OUT as exc:
            raise QueryTimedOut(f"{type(exc).__name__}: {exc}") from exc
        except UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc)) from exc


def count_query(where: list[str], args: list[Any], limit: int | None) -> tuple[str, list[Any]]:
    """The matches, counted up to one past ``limit`` at most (so that a capped total can be told)."""
    clause = " AND ".join(where) or "TRUE"
    if limit is None:
        return f"SELECT count(*) FROM activities WHERE {clause}", list(args)
    counted = [*args, limit + 1]
    return (
        f"SELECT count(*) FROM (SELECT 1 FROM activities WHERE {clause} LIMIT ${len(counted)}) AS matches",
        counted,
    )


def conditions(query: ActivityQuery) -> tuple[list[str], list[Any]]:
    """The filters as SQL conditions with numbered parameters (values are only ever parameters), the
    tenant's first: every read is one tenant's."""
    where: list[str] = ["tenant = $1"]
    args: list[Any] = [query.tenant]

    def param(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if query.user_id is not None:
        where.append(f"user_id = {param(query.user_id)}")
    if len(query.actions) == 1:
        where.append(f"action = {param(query.actions[0])}")
    elif query.actions:
        where.append(f"action = ANY({param(list(query.actions))}::text[])")
    if query.start is not None:
        where.append(f'"timestamp" >= {param(query.start)}')
    if query.end is not None:
        where.append(f'"timestamp" <= {param(query.end)}')
    return where, args


def page_query(query: ActivityQuery, where: list[str], args: list[Any]) -> tuple[str, list[Any]]:
    """One page (one row more than asked, to tell whether another follows), newest first."""
    where, args = list(where), list(args)
    if query.after is not None:
        args += [query.after.timestamp, query.after.id]
        where.append(f'("timestamp", id) < (${len(args) - 1}, ${len(args)})')
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    args += [query.limit + 1, query.skip]
    return (
        f"SELECT {SELECT} FROM activities {clause}{ORDER} LIMIT ${len(args) - 1} OFFSET ${len(args)}",
        args,
    )
