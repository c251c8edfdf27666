"""The PostgreSQL schema, as numbered migrations applied in order at start-up (no ORM).

``schema_migrations`` records each applied version. Applying takes a transaction-scoped advisory lock,
so an API and a consumer starting together apply each migration once; every statement is written to be
harmless when repeated. A migration is never edited once released: a change is a new one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

log = logging.getLogger(__name__)

_LOCK = 0x61637476  # "actv": one advisory lock key for this service's schema changes


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


MIGRATIONS = (
    Migration(
        1,
        "activities, dead letters and consumer progress",
        """
        CREATE TABLE IF NOT EXISTS activities (
            id text PRIMARY KEY,
            user_id text NOT NULL,
            action text NOT NULL,
            "timestamp" timestamptz(3) NOT NULL,
            received_at timestamptz(3) NOT NULL,
            metadata jsonb NOT NULL,
            ip_address text,
            original_timestamp timestamptz(3),
            sent_at timestamptz(3),
            trace_id text
        );
        -- One index per filter, each ending in the sort keys, so that filter + order + keyset is one range.
        CREATE INDEX IF NOT EXISTS activities_timestamp_id ON activities ("timestamp" DESC, id DESC);
        CREATE INDEX IF NOT EXISTS activities_user_timestamp_id
            ON activities (user_id, "timestamp" DESC, id DESC);
        CREATE INDEX IF NOT EXISTS activities_action_timestamp_id
            ON activities (action, "timestamp" DESC, id DESC);

        CREATE TABLE IF NOT EXISTS dead_letters (
            source text PRIMARY KEY,
            event_id text,
            error_type text NOT NULL,
            reason text NOT NULL,
            at timestamptz(3) NOT NULL
        );
        CREATE INDEX IF NOT EXISTS dead_letters_event_id ON dead_letters (event_id);

        CREATE TABLE IF NOT EXISTS consumer_progress (
            topic text NOT NULL,
            partition integer NOT NULL,
            next_offset bigint NOT NULL,
            last_received_at timestamptz(3),
            caught_up boolean NOT NULL,
            recorded_at timestamptz(3) NOT NULL,
            PRIMARY KEY (topic, partition)
        );
        """,
    ),
    Migration(
        2,
        "counts per minute, hour and day, kept with the events",
        """
        CREATE TABLE IF NOT EXISTS activity_counts (
            granularity text NOT NULL CHECK (granularity IN ('minute', 'hour', 'day')),
            bucket timestamptz NOT NULL,
            action text NOT NULL,
            total bigint NOT NULL,
            PRIMARY KEY (granularity, bucket, action)
        );
        -- The events stored before the counts existed.
        INSERT INTO activity_counts (granularity, bucket, action, total)
        SELECT g.granularity, date_trunc(g.granularity, a."timestamp", 'UTC'), a.action, count(*)
        FROM activities a CROSS JOIN (VALUES ('minute'), ('hour'), ('day')) AS g (granularity)
        GROUP BY 1, 2, 3
        ON CONFLICT (granularity, bucket, action) DO NOTHING;
        """,
    ),
    Migration(
        3,
        "tenants, content fingerprints and erasures",
        """
        -- Everything stored before tenants belongs to the default one. A constant default makes adding
        -- the column a catalogue change, not a rewrite of the table.
        ALTER TABLE activities
            ADD COLUMN IF NOT EXISTS tenant text NOT NULL DEFAULT 'default',
            ADD COLUMN IF NOT EXISTS source text,
            ADD COLUMN IF NOT EXISTS fingerprint text;
        -- An event id is unique within its tenant only.
        ALTER TABLE activities
            DROP CONSTRAINT IF EXISTS activities_pkey,
            ADD CONSTRAINT activities_pkey PRIMARY KEY (tenant, id);
        -- Every read is one tenant's: each index leads with it. The user index also serves an erasure
        -- (tenant, user, then received_at filtered along it: nearly every row it reads is removed).
        DROP INDEX IF EXISTS activities_timestamp_id;
        DROP INDEX IF EXISTS activities_user_timestamp_id;
        DROP INDEX IF EXISTS activities_action_timestamp_id;
        CREATE INDEX IF NOT EXISTS activities_tenant_timestamp_id
            ON activities (tenant, "timestamp" DESC, id DESC);
        CREATE INDEX IF NOT EXISTS activities_tenant_user_timestamp_id
            ON activities (tenant, user_id, "timestamp" DESC, id DESC);
        CREATE INDEX IF NOT EXISTS activities_tenant_action_timestamp_id
            ON activities (tenant, action, "timestamp" DESC, id DESC);

        ALTER TABLE activity_counts ADD COLUMN IF NOT EXISTS tenant text NOT NULL DEFAULT 'default';
        ALTER TABLE activity_counts
            DROP CONSTRAINT IF EXISTS activity_counts_pkey,
            ADD CONSTRAINT activity_counts_pkey PRIMARY KEY (tenant, granularity, bucket, action);

        -- Unreadable messages may name no tenant nor user; those that named an event were the default
        -- tenant's (there was no other).
        ALTER TABLE dead_letters
            ADD COLUMN IF NOT EXISTS tenant text,
            ADD COLUMN IF NOT EXISTS user_id text;
        UPDATE dead_letters SET tenant = 'default' WHERE tenant IS NULL AND event_id IS NOT NULL;
        DROP INDEX IF EXISTS dead_letters_event_id;
        CREATE INDEX IF NOT EXISTS dead_letters_tenant_event_id ON dead_letters (tenant, event_id);
        CREATE INDEX IF NOT EXISTS dead_letters_tenant_user_id ON dead_letters (tenant, user_id);

        CREATE TABLE IF NOT EXISTS erasures (
            id text PRIMARY KEY,
            tenant text NOT NULL,
            user_id text NOT NULL,
            requested_at timestamptz(3) NOT NULL,
            status text NOT NULL CHECK (status IN ('pending', 'running', 'done')),
            removed bigint NOT NULL DEFAULT 0,
            finished_at timestamptz(3),
            generation integer NOT NULL DEFAULT 0,
            lease_until timestamptz(3)
        );
        -- What every consumer batch asks (the latest request per user): an index-only read.
        CREATE INDEX IF NOT EXISTS erasures_tenant_user_requested
            ON erasures (tenant, user_id, requested_at);
        -- Erasures are kept for good; a claim reads only those not done, oldest first.
        CREATE INDEX IF NOT EXISTS erasures_open ON erasures (requested_at) WHERE status <> 'done';
        """,
    ),
)


async def migrate(
    connection: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
    migrations: tuple[Migration, ...] = MIGRATIONS,
) -> list[int]:
    """Applies what is missing, in order; returns the versions applied now."""
    applied_now: list[int] = []
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row["version"] for row in await connection.fetch("SELECT version FROM schema_migrations")}
        for migration in migrations:
            if migration.version in done:
                continue
            await connection.execute(migration.sql)
            await connection.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
            applied_now.append(migration.version)
            log.info("database schema: applied migration %d (%s)", migration.version, migration.name)
    return applied_now
