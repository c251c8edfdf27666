"""Scenario 9's ceiling: the driver's fastest bulk insert of the consumer's rows into PostgreSQL.

Each variant writes into a schema of its own in the drain's database, made by the service's own
migrations (the same tables, the same four indexes), the same rows the consumer wrote (the same ids and
values as the decoded events), CONSUMER_MAX_BATCH_RECORDS rows a statement:

- **bare, one connection**: asyncpg, ``INSERT INTO activities (...) SELECT * FROM unnest($1::text[], ...)
  ON CONFLICT (tenant, id) DO NOTHING RETURNING id``, one batch at a time (what the scratch measurement in
  bench/scratch/pg_driver_bench.md found fastest for one statement per batch);
- **bare, two connections**: the same statement with two batches in flight on two connections;
- **bare json, one and two connections**: the same insert reading the batch as one JSON parameter
  (``json_to_recordset``, what the service sends: rows.rows_json);
- **service statement, one connection**: the service's own INSERT (repository.INSERT), which also moves
  the counts over time (``activity_counts``) in the same statement: what the counts cost;
- **service statement, two connections**: the same, two batches in flight (their count rows are the
  same hot rows, so the second statement waits for the first one's commit to update them).

The variants are interleaved in rounds of a few batches, so that the tables grow alike and the noise of a
shared machine falls on all of them. Only the statements are timed (the rows are built before). The
ceiling is the faster bare variant: the consumer is measured against the best the driver does.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

import asyncpg

from activity_service.infrastructure.postgres.migrations import migrate
from activity_service.infrastructure.postgres.rows import COLUMNS, RECORD, TYPES
from activity_service.infrastructure.postgres.store import _prepare
from activity_service.infrastructure.postgres.writes import INSERT
from bench.procs import cpu_seconds
from bench.stats import ms, percentile
from bench.targets import dsn_of

BARE = (
    f"INSERT INTO activities ({', '.join(COLUMNS)})"
    f" SELECT * FROM unnest({', '.join(f'${n}::{t}[]' for n, t in enumerate(TYPES, start=1))})"
    " ON CONFLICT (tenant, id) DO NOTHING RETURNING id"
)
BARE_JSON = (
    f"INSERT INTO activities ({', '.join(COLUMNS)}) SELECT * FROM json_to_recordset($1::json) AS b ({RECORD})"
    " ON CONFLICT (tenant, id) DO NOTHING RETURNING id"
)
ROUND_BATCHES = 20
# name: (statement, connections it keeps busy, its parameters: one array per column, or one JSON array)
VARIANTS = {
    "bare_one_connection": (BARE, 1, "columns"),
    "bare_two_connections": (BARE, 2, "columns"),
    "bare_json_one_connection": (BARE_JSON, 1, "json"),
    "bare_json_two_connections": (BARE_JSON, 2, "json"),
    "service_statement": (INSERT, 1, "json"),
    "service_statement_two_connections": (INSERT, 2, "json"),
}
BARE_VARIANTS = tuple(v for v in VARIANTS if v.startswith("bare"))


class Batches(Protocol):
    def columns(self, start: int, stop: int) -> list[list[Any]]: ...

    def rows_json(self, start: int, stop: int) -> str: ...


async def _connect(dsn: str, schema: str) -> asyncpg.Connection:
    connection = await asyncpg.connect(dsn, timeout=10, server_settings={"search_path": schema})
    await _prepare(connection)
    return connection


async def ceiling(dsn: str, database: str, count: int, batch: int, batches: Batches) -> dict[str, Any]:
    where = dsn_of(dsn, database)
    connections: dict[str, list[asyncpg.Connection]] = {}
    try:
        for variant in VARIANTS:
            schema = f"ceiling_{variant}"
            first = await asyncpg.connect(where, timeout=10)
            await first.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
            await first.close()
            connections[variant] = [await _connect(where, schema) for _ in range(VARIANTS[variant][1])]
            await migrate(connections[variant][0])  # the service's tables and indexes, in this schema
        return await _measure(connections, count, batch, batches)
    finally:
        for pair in connections.values():
            for connection in pair:
                await connection.close()


async def _measure(
    connections: dict[str, list[asyncpg.Connection]],
    count: int,
    batch: int,
    batches: Batches,
) -> dict[str, Any]:
    # Each variant's server CPU: its backends' own (the server runs on this machine), /proc's account.
    backends = {v: [await c.fetchval("SELECT pg_backend_pid()") for c in cs] for v, cs in connections.items()}
    server_cpu = {v: sum(cpu_seconds(pid) for pid in pids) for v, pids in backends.items()}
    spent = dict.fromkeys(VARIANTS, 0.0)
    latencies: dict[str, list[float]] = {v: [] for v in VARIANTS}
    tenths = {v: [0.0] * 10 for v in VARIANTS}
    returned = dict.fromkeys(VARIANTS, 0)
    step = batch * ROUND_BATCHES
    for start in range(0, count, step):
        bounds = [(s, min(s + batch, count)) for s in range(start, min(start + step, count), batch)]
        params = {
            "columns": [batches.columns(*b) for b in bounds],
            "json": [[batches.rows_json(*b)] for b in bounds],
        }
        tenth = min(9, start * 10 // count)
        for variant, (sql, _, form) in VARIANTS.items():
            # With two connections, each takes the next batch as soon as its previous one is done.
            queue = list(reversed(params[form]))
            began = time.perf_counter()
            done = await asyncio.gather(
                *(_worker(c, sql, queue, latencies[variant]) for c in connections[variant])
            )
            took = time.perf_counter() - began
            returned[variant] += sum(done)
            spent[variant] += took
            tenths[variant][tenth] += took
    for variant, pids in backends.items():
        server_cpu[variant] = sum(cpu_seconds(pid) for pid in pids) - server_cpu[variant]
    result: dict[str, Any] = {}
    for variant in VARIANTS:
        result[variant] = {
            "server_cpu_us_per_event": round(1e6 * server_cpu[variant] / count, 1)
            if server_cpu[variant] > 0
            else None,
            "events_per_second": round(count / spent[variant], 1) if spent[variant] else 0.0,
            "events": count,
            "rows_returned": returned[variant],
            "seconds": round(spent[variant], 3),
            "statement_p50_ms": ms(percentile(latencies[variant], 50)),
            "statement_p99_ms": ms(percentile(latencies[variant], 99)),
            "first_tenth_events_per_second": _tenth_rate(count, tenths[variant][0]),
            "last_tenth_events_per_second": _tenth_rate(count, tenths[variant][9]),
        }
    return result


async def _worker(
    connection: asyncpg.Connection, sql: str, queue: list[list[list[Any]]], latencies: list[float]
) -> int:
    done = 0
    while queue:
        arrays = queue.pop()
        began = time.perf_counter()
        done += len(await connection.fetch(sql, *arrays))
        latencies.append(time.perf_counter() - began)
    return done


def _tenth_rate(count: int, seconds: float) -> float:
    return round(count / 10 / seconds, 1) if seconds else 0.0
