"""Delivery records in PostgreSQL: the dead-letter log and the per-partition persist progress."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from activity_service.domain.delivery import DeadLetter, PartitionProgress
from activity_service.domain.errors import StoreUnavailable
from activity_service.infrastructure.postgres.repository import UNAVAILABLE


class PostgresDeadLetterLog:
    """One row per dead-lettered message, keyed by its source coordinates."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def add(self, letter: DeadLetter) -> None:
        async with self._pool.acquire() as connection:
            await connection.execute(
                "INSERT INTO dead_letters (source, event_id, error_type, reason, at)"
                " VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (source) DO UPDATE SET event_id = EXCLUDED.event_id,"
                " error_type = EXCLUDED.error_type, reason = EXCLUDED.reason, at = EXCLUDED.at",
                letter.source,
                letter.event_id,
                letter.error_type,
                letter.reason,
                letter.at,
            )

    async def forget(self, event_ids: Sequence[str]) -> None:
        if event_ids:
            async with self._pool.acquire() as connection:
                await connection.execute(
                    "DELETE FROM dead_letters WHERE event_id = ANY($1::text[])", list(event_ids)
                )

    async def has_event(self, event_id: str) -> bool:
        try:
            async with self._pool.acquire() as connection:
                found = await connection.fetchval(
                    "SELECT 1 FROM dead_letters WHERE event_id = $1 LIMIT 1", event_id
                )
        except UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc)) from exc
        return found is not None


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
