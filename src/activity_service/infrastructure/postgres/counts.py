"""ActivityCounts on PostgreSQL: the per-interval counts kept with the events (repository.py), read as
one range of their primary key (tenant, granularity, bucket, action); a userId filter counts that
user's events along their index (tenant, user_id, "timestamp") instead."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from activity_service.domain.errors import QueryTimedOut, StoreUnavailable
from activity_service.domain.stats import BucketCount, CountQuery
from activity_service.infrastructure.postgres.repository import (
    MATCHES_NOTHING,
    READ_TIMED_OUT,
    UNAVAILABLE,
)


class PostgresActivityCounts:
    def __init__(self, pool: asyncpg.Pool, *, read_timeout_ms: int | None = None) -> None:
        """``read_timeout_ms``: every count read, at most (asyncpg cancels it then: QueryTimedOut)."""
        self._pool = pool
        self._read_s = None if read_timeout_ms is None else read_timeout_ms / 1000

    async def count(self, query: CountQuery) -> Sequence[BucketCount]:
        args: list[Any] = [query.interval.value, query.first, query.after_last, query.tenant]
        if query.user_id is None:
            sql = (
                "SELECT bucket, action, total FROM activity_counts WHERE tenant = $4"
                " AND granularity = $1 AND bucket >= $2 AND bucket < $3 AND total > 0"
            )
        else:
            args.append(query.user_id)
            sql = (
                "SELECT date_trunc($1, \"timestamp\", 'UTC') AS bucket, action, count(*) AS total"
                ' FROM activities WHERE tenant = $4 AND user_id = $5 AND "timestamp" >= $2'
                ' AND "timestamp" < $3'
            )
        if query.actions:
            args.append(list(query.actions))
            sql += f" AND action = ANY(${len(args)}::text[])"
        if query.user_id is not None:
            sql += " GROUP BY 1, 2"
        try:
            async with self._pool.acquire(timeout=self._read_s) as connection:
                rows = await connection.fetch(sql, *args, timeout=self._read_s)
        except MATCHES_NOTHING:
            return []
        except READ_TIMED_OUT as exc:
            raise QueryTimedOut(f"{type(exc).__name__}: {exc}") from exc
        except UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc)) from exc
        return buckets_of((r["bucket"], r["action"], r["total"]) for r in rows)


def buckets_of(rows: Any) -> list[BucketCount]:
    totals: dict[datetime, int] = defaultdict(int)
    actions: dict[datetime, dict[str, int]] = defaultdict(dict)
    for bucket, action, total in rows:
        totals[bucket] += int(total)
        actions[bucket][action] = actions[bucket].get(action, 0) + int(total)
    return [BucketCount(start, totals[start], actions[start]) for start in sorted(totals)]
