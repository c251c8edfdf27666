"""Delivery records in PostgreSQL: the dead-letter log and the per-partition persist progress."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from activity_service.domain.activity import EventKey
from activity_service.domain.delivery import DeadLetter, PartitionProgress
from activity_service.domain.errors import StoreUnavailable
from activity_service.infrastructure.postgres.repository import MATCHES_NOTHING, UNAVAILABLE


class PostgresDeadLetterLog:
    """One row per dead-lettered message, keyed by its source coordinates; found by (tenant, event_id)
    and, for an erasure, by (tenant, user_id)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def add(self, letter: DeadLetter) -> None:
        async with self._pool.acquire() as connection:
            await connection.execute(
                "INSERT INTO dead_letters (source, event_id, error_type, reason, at, tenant, user_id)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7)"
                " ON CONFLICT (source) DO UPDATE SET event_id = EXCLUDED.event_id,"
                " error_type = EXCLUDED.error_type, reason = EXCLUDED.reason, at = EXCLUDED.at,"
                " tenant = EXCLUDED.tenant, user_id = EXCLUDED.user_id",
                letter.source,
                letter.event_id,
                letter.error_type,
                letter.reason,
                letter.at,
                letter.tenant,
                letter.user_id,
            )

    async def forget(self, events: Sequence[EventKey]) -> None:
        if events:
            tenants, ids = zip(*events, strict=True)
            async with self._pool.acquire() as connection:
                await connection.execute(
                    "DELETE FROM dead_letters"
                    " WHERE (tenant, event_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
                    list(tenants),
                    list(ids),
                )

    async def forget_user(self, tenant: str, user_id: str, before: datetime) -> int:
        async with self._pool.acquire() as connection:
            status = await connection.execute(
                "DELETE FROM dead_letters WHERE tenant = $1 AND user_id = $2 AND at < $3",
                tenant,
                user_id,
                before,
            )
        return int(status.split()[-1])  # "DELETE <count>"

    async def error_types(self, tenant: str, event_id: str) -> set[str]:
        try:
            async with self._pool.acquire() as connection:
                rows = await connection.fetch(
                    "SELECT DISTINCT error_type FROM dead_letters WHERE tenant = $1 AND event_id = $2",
                    tenant,
                    event_id,
                )
        except MATCHES_NOTHING:
            return set()
        except UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc)) from exc
        return {r["error_type"] for r in rows}


class PostgresProgressLog:
    """One row per (topic, partition). A write never moves the offset back (the upsert's condition), so a
    consumer that lost a partition in a rebalance cannot undo what the new owner recorded."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(self, progress: Sequence[PartitionProgress]) -> None:
        if not progress:
            return
        async with self._pool.acquire() as connection:
            await connection.executemany(
                "INSERT INTO consumer_progress"
                " (topic, partition, next_offset, last_received_at, caught_up, recorded_at)"
                " VALUES ($1, $2, $3, $4, $5, $6)"
                " ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset,"
                " last_received_at = COALESCE(EXCLUDED.last_received_at, consumer_progress.last_received_at),"
                " caught_up = EXCLUDED.caught_up, recorded_at = EXCLUDED.recorded_at"
                " WHERE consumer_progress.next_offset <= EXCLUDED.next_offset",
                [
                    (p.topic, p.partition, p.next_offset, p.last_received_at, p.caught_up, p.recorded_at)
                    for p in progress
                ],
            )

    async def read(self, topic: str) -> Sequence[PartitionProgress]:
        try:
            async with self._pool.acquire() as connection:
                rows = await connection.fetch(
                    "SELECT topic, partition, next_offset, last_received_at, caught_up, recorded_at"
                    " FROM consumer_progress WHERE topic = $1",
                    topic,
                )
        except UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc)) from exc
        return [
            PartitionProgress(
                r["topic"],
                r["partition"],
                r["next_offset"],
                r["last_received_at"],
                r["caught_up"],
                r["recorded_at"],
            )
            for r in rows
        ]
