"""The PostgreSQL schema's migrations (migrations.py) on a real server: from nothing, from a database an
older version of the service filled, and from two processes starting at once; and the indexes they make
serving the statements that write and remove events (conflict lookup, erasure, retention)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from activity_service.domain.activity import DEFAULT_TENANT, Activity
from activity_service.domain.query import ActivityQuery
from activity_service.domain.stats import CountQuery, Interval
from activity_service.infrastructure.postgres.migrations import MIGRATIONS, migrate
from activity_service.infrastructure.postgres.rows import rows_json
from activity_service.infrastructure.postgres.store import open_postgres_store
from activity_service.infrastructure.postgres.writes import ERASE, INSERT, PURGE, TENANTS
from activity_service.infrastructure.settings import PostgresSettings
from tests.conftest import Stack
from tests.postgres import postgres_database

LATEST = [m.version for m in MIGRATIONS]
BASE = datetime(2026, 3, 1, tzinfo=UTC)
# How version 2 of the service stored a batch (its repository's INSERT, frozen here): events keyed by id
# alone, counts without a tenant.
V2_COLUMNS = (
    'id, user_id, action, "timestamp", received_at, metadata, ip_address, original_timestamp, sent_at,'
    " trace_id"
)
V2_INSERT = (
    f"WITH inserted AS (INSERT INTO activities ({V2_COLUMNS})"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[],"
    " $6::jsonb[], $7::text[], $8::timestamptz[], $9::timestamptz[], $10::text[])"
    ' ON CONFLICT (id) DO NOTHING RETURNING id, action, "timestamp"'
    "), counted AS ("
    " INSERT INTO activity_counts (granularity, bucket, action, total)"
    " SELECT g.granularity, date_trunc(g.granularity, i.\"timestamp\", 'UTC'), i.action, count(*)"
    " FROM inserted i CROSS JOIN (VALUES ('minute'), ('hour'), ('day')) AS g (granularity)"
    " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    " ON CONFLICT (granularity, bucket, action) DO UPDATE SET total = activity_counts.total + EXCLUDED.total"
    ") SELECT id FROM inserted"
)


@pytest.fixture
async def dsn(stack: Stack, unique_name: str) -> AsyncIterator[str]:
    async with postgres_database(stack.postgres_dsn, unique_name) as created:
        yield created


async def indexes(connection: asyncpg.Connection, table: str) -> set[str]:
    rows = await connection.fetch("SELECT indexname FROM pg_indexes WHERE tablename = $1", table)
    return {r["indexname"] for r in rows}


async def test_an_empty_database_migrates_to_the_latest_schema_once(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        assert await migrate(connection) == LATEST
        assert await migrate(connection) == []
        versions = await connection.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in versions] == LATEST
        assert await indexes(connection, "activities") == {
            "activities_pkey",
            "activities_tenant_timestamp_id",
            "activities_tenant_user_timestamp_id",
            "activities_tenant_action_timestamp_id",
        }
        assert await indexes(connection, "dead_letters") == {
            "dead_letters_pkey",
            "dead_letters_tenant_event_id",
            "dead_letters_tenant_user_id",
        }
        primary_keys = await connection.fetch(
            "SELECT c.conrelid::regclass::text AS tab, array_agg(a.attname ORDER BY k.n) AS cols"
            " FROM pg_constraint c CROSS JOIN unnest(c.conkey) WITH ORDINALITY AS k (attnum, n)"
            " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum"
            " WHERE c.contype = 'p' AND c.connamespace = 'public'::regnamespace GROUP BY 1"
        )
        assert {r["tab"]: list(r["cols"]) for r in primary_keys} == {
            "activities": ["tenant", "id"],
            "activity_counts": ["tenant", "granularity", "bucket", "action"],
            "dead_letters": ["source"],
            "consumer_progress": ["topic", "partition"],
            "erasures": ["id"],
            "schema_migrations": ["version"],
        }
    finally:
        await connection.close()


def v2_batch(activities: list[Activity]) -> list[list[Any]]:
    return [
        [a.id for a in activities],
        [a.user_id for a in activities],
        [a.action for a in activities],
        [a.timestamp for a in activities],
        [a.received_at for a in activities],
        [json.dumps(dict(a.metadata)) for a in activities],
        [a.ip_address for a in activities],
        [a.original_timestamp for a in activities],
        [a.sent_at for a in activities],
        [a.trace_id for a in activities],
    ]


async def test_a_version_2_database_keeps_its_data_as_the_default_tenants(dsn: str) -> None:
    old = [
        Activity.record(
            id=f"e{i:04d}",
            user_id=f"u{i % 3}",
            action="buy" if i % 2 else "view",
            received_at=BASE + timedelta(minutes=7 * i),
            metadata={"n": i},
            ip_address="198.51.100.4" if i == 0 else None,
        )
        for i in range(40)
    ]
    connection = await asyncpg.connect(dsn)
    try:
        assert await migrate(connection, MIGRATIONS[:2]) == [1, 2]
        await connection.execute(V2_INSERT, *v2_batch(old))
        await connection.execute(
            "INSERT INTO dead_letters (source, event_id, error_type, reason, at) VALUES"
            " ('t:0:1', 'e9999', 'InvalidActivity', 'userId: empty', $1),"
            " ('t:0:2', NULL, 'UndecodableMessage', 'not JSON', $1)",
            BASE,
        )
    finally:
        await connection.close()

    async with open_postgres_store(PostgresSettings.explicit(dsn=dsn)) as store:  # migrates to the latest
        page = await store.activities.find(ActivityQuery(limit=100))
        assert sorted(page.items, key=lambda a: a.id) == old  # tenant default, no source, no fingerprint
        assert page.total == len(old)
        assert await store.activities.get(DEFAULT_TENANT, "e0000") == old[0]
        assert (await store.activities.find(ActivityQuery(user_id="u1", limit=100))).total == 13
        for interval in Interval:
            buckets = await store.counts.count(
                CountQuery(interval, BASE, BASE + timedelta(hours=16), by_action=True)
            )
            assert sum(b.total for b in buckets) == len(old), interval
            assert sum(b.by_action.get("buy", 0) for b in buckets) == 20, interval
        assert await store.dead_letters.error_types(DEFAULT_TENANT, "e9999") == {"InvalidActivity"}

        # The old events' ids are the default tenant's only: another tenant may use them.
        again = Activity.record(id="e0000", user_id="u0", action="view", received_at=BASE, tenant="acme")
        assert (await store.activities.add_many([old[0], again])).inserted == 1
        assert await store.activities.get("acme", "e0000") == again


async def test_two_processes_starting_at_once_apply_each_migration_once(dsn: str) -> None:
    first, second = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        applied = await asyncio.gather(migrate(first), migrate(second))
        assert sorted(applied) == [[], LATEST]  # the second waited for the first, then found all done
        rows = await first.fetch("SELECT version, count(*) AS n FROM schema_migrations GROUP BY 1 ORDER BY 1")
        assert [(r["version"], r["n"]) for r in rows] == [(v, 1) for v in LATEST]
    finally:
        await first.close()
        await second.close()


def scans(plan: dict[str, Any]) -> list[str]:
    """How the plan reads the activities table, each time: the index it reads, or ``Seq Scan``."""
    found = []
    if plan.get("Relation Name") == "activities" and plan["Node Type"] == "Seq Scan":
        found.append("Seq Scan")
    if str(plan.get("Index Name", "")).startswith("activities_"):
        found.append(plan["Index Name"])
    for child in plan.get("Plans", []):
        found += scans(child)
    return found


async def plan_of(connection: asyncpg.Connection, sql: str, *args: Any) -> dict[str, Any]:
    [[raw]] = await connection.fetch(f"EXPLAIN (FORMAT JSON) {sql}", *args)
    plan: dict[str, Any] = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    return plan


async def test_the_writing_statements_read_activities_along_their_indexes(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.set_type_codec(
            "jsonb", schema="pg_catalog", encoder=json.dumps, decoder=json.loads, format="text"
        )
        await migrate(connection)
        # 40,000 events over 4 tenants and 200 users each: enough that the planner's choice is its own.
        await connection.execute(
            """
            INSERT INTO activities (tenant, id, user_id, action, "timestamp", received_at, metadata)
            SELECT 't' || (i % 4), 'e-' || i, 'u' || (i % 800), 'view',
                   $1::timestamptz - i * interval '1 minute', $1::timestamptz - i * interval '1 minute', '{}'
            FROM generate_series(1, 40000) AS i
            """,
            BASE,
        )
        await connection.execute("ANALYZE activities")
        erase = scans(await plan_of(connection, ERASE, "t1", "u5", BASE))
        assert erase == ["activities_tenant_user_timestamp_id"], erase
        purge = scans(await plan_of(connection, PURGE, "t1", BASE - timedelta(days=20), 10_000))
        assert purge and set(purge) <= {"activities_tenant_timestamp_id", "activities_pkey"}, purge
        # The insert's lookup of stored fingerprints (conflicts): a key probe per record, in the plan for
        # these values and in the generic one a prepared statement may switch to. The batch is small
        # beside the table, as a consumer's is beside a real one (here, 500 against 40,000 rows is
        # rightly one scan instead; at 200,000 rows 1,000 are probed).
        resent = [
            Activity.record(
                id=f"e-{i}", user_id="u1", action="view", received_at=BASE, tenant="t1", chosen_id=True
            )
            for i in range(100)
        ]
        for mode in ("force_custom_plan", "force_generic_plan"):
            await connection.execute(f"SET plan_cache_mode = {mode}")
            insert = scans(await plan_of(connection, INSERT, rows_json(resent)))
            assert insert == ["activities_pkey"], (mode, insert)
        tenants = scans(await plan_of(connection, TENANTS))
        assert tenants and "Seq Scan" not in tenants, tenants
        assert [r["tenant"] for r in await connection.fetch(TENANTS)] == ["t0", "t1", "t2", "t3"]
    finally:
        await connection.close()
