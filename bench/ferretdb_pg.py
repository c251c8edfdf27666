"""Scenario 13: the MongoDB path on FerretDB with its PostgreSQL backend, against FerretDB on SQLite.

Issue #16 item 9: FerretDB can keep its data in the PostgreSQL server the stack already runs instead of
SQLite. The bench starts a FerretDB of its own (the stack's binary, `--handler=postgresql`, a free port,
a PostgreSQL database of this run), never the shared one, and runs on it the MongoDB path's scenarios
with smaller counts: the drain with its raw insert_many ceiling (as 4), the queries (as 6, same count),
the counts over time (as 11). Each figure stands next to the same run's FerretDB-on-SQLite figure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from bench import counts, persistence, queries
from bench.checks import check
from bench.context import Context
from bench.errors import BenchError
from bench.procs import free_port
from bench.targets import Target, create_database, database_of, drop_pg_databases

NUMBER = "13"


def ferretdb_binary() -> Path:
    cache = Path(os.environ.get("ACTIVITY_CACHE", Path.home() / ".cache" / "activity-service"))
    return cache / "bin" / "ferretdb"


@contextmanager
def ferretdb_on_postgresql(ctx: Context, database: str) -> Iterator[tuple[Target, int]]:
    """A FerretDB of the bench's own on the stack's PostgreSQL, in ``database``; stopped on the way out."""
    binary = ferretdb_binary()
    if not binary.is_file():
        raise BenchError(f"no FerretDB binary at {binary}: `make stack-up` builds it")
    asyncio.run(create_database(ctx.postgres, database))
    port = free_port()
    state = Path(tempfile.mkdtemp(prefix="bench-ferretdb-pg-"))
    dsn = ctx.postgres.replace("postgresql://", "postgres://", 1).rsplit("/", 1)[0] + "/" + database
    log = (ctx.procs.logs / "ferretdb-postgresql.log").open("ab")
    process = subprocess.Popen(
        [
            str(binary),
            "--handler=postgresql",
            f"--postgresql-url={dsn}",
            f"--listen-addr=127.0.0.1:{port}",
            f"--state-dir={state}",
            "--telemetry=disable",
            "--debug-addr=-",
            "--log-level=error",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    uri = f"mongodb://127.0.0.1:{port}"
    try:
        asyncio.run(_wait_for(uri, process))
        yield Target("mongodb", "FerretDB (PostgreSQL)", uri), process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(state, ignore_errors=True)


async def _wait_for(uri: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"FerretDB on PostgreSQL exited at start ({process.returncode}); see its log")
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, serverSelectionTimeoutMS=1000)
        try:
            await client.admin.command("ping")
            return
        except Exception:
            await asyncio.sleep(0.3)
        finally:
            await client.close()
    raise BenchError(f"FerretDB on PostgreSQL did not answer at {uri} within 30 s")


def run(ctx: Context, scenarios: dict[str, Any]) -> dict[str, Any]:
    plan = ctx.plan
    database = f"bench_{ctx.run_id}_ferretpg{ctx.generation or ''}"
    ctx.say(f"scenario 13: starting a FerretDB of this run on PostgreSQL (database {database})")
    try:
        with ferretdb_on_postgresql(ctx, database) as (target, pid):
            servers = {
                "ferretdb": pid,
                **{k: v for k, v in ctx.stack_pids.items() if k in ("kafka", "postgres")},
            }
            common = {"number": NUMBER, "server_pids": servers, "pg_database": database}
            drained = persistence.drain(
                ctx, target, phase="fpgdrain", events=plan.ferretpg_drain_events, profile=False, **common
            )
            drained = persistence.with_ceiling(
                ctx, drained, target, phase="fpgdrain", events=plan.ferretpg_drain_events, **common
            )
            read = queries.run(
                ctx, target, phase="fpgqueries", events=plan.ferretpg_query_events, number=NUMBER
            )
            stats = counts.mongo(ctx, target, phase="fpgstats", label="ferretdb-postgresql")
    finally:
        asyncio.run(drop_pg_databases(ctx.postgres, database))
    return _scenario(ctx, drained, read, stats, scenarios, database_of(ctx.postgres))


def _ratio(value: float | None, ceiling: float | None) -> float | None:
    return round(value / ceiling, 3) if value is not None and ceiling else None


def _scenario(
    ctx: Context,
    drained: dict[str, Any],
    read: dict[str, Any],
    stats: dict[str, Any],
    scenarios: dict[str, Any],
    server_database: str,
) -> dict[str, Any]:
    sqlite_drain = scenarios.get("4_consumer", {}).get("figures", {})
    sqlite_reads = scenarios.get("6_queries", {}).get("figures", {})
    sqlite_stats = scenarios.get("11_stats", {}).get("figures", {})
    d, q = drained["figures"], read["figures"]
    hours = ctx.plan.stats_hours
    ratio = _ratio(d.get("events_per_second"), d.get("raw_insert_events_per_second"))
    sqlite_ratio = _ratio(
        sqlite_drain.get("events_per_second"), sqlite_drain.get("raw_insert_events_per_second")
    )
    figures: dict[str, Any] = {
        "drain_events": d["events"],
        "drain_events_per_second": d["events_per_second"],
        "raw_insert_many_events_per_second": d["raw_insert_events_per_second"],
        "drain_ratio_to_raw_insert_many": ratio,
        "sqlite_drain_ratio_to_raw_insert_many": sqlite_ratio,
        "database_cpu_percent_during_drain": d["database_cpu_percent"],
        "query_events": q["stored_events"],
        **{f"queries: {k}": v for k, v in q.items() if k.endswith("_ms")},
        **{k.replace("ferretdb-postgresql: ", "stats: "): v for k, v in stats["figures"].items()},
    }
    shapes = [
        "first page",
        "first page, userId",
        "first page, action",
        "first page, cursor mode",
        "deep cursor page",
        "get by id",
    ]
    pairs = [(f"{s} p50", q[f"{s} p50_ms"], sqlite_reads.get(f"{s} p50_ms")) for s in shapes] + [
        (
            f"stats, {hours} hourly buckets p99",
            stats["main"]["p99_ms"],
            sqlite_stats.get(f"ferretdb: {hours} hourly buckets p99_ms"),
        ),
    ]
    checks = [
        check(
            "FerretDB on PostgreSQL: consumer drain vs raw insert_many",
            d["events_per_second"],
            "events/s",
            ceiling=d["raw_insert_events_per_second"],
            ceiling_label="raw insert_many on FerretDB (PostgreSQL)",
        ),
        check(
            "FerretDB on PostgreSQL vs on SQLite: drain",
            d["events_per_second"],
            "events/s",
            ceiling=sqlite_drain.get("events_per_second"),
            ceiling_label="FerretDB on SQLite, scenario 4",
        ),
    ]
    checks += [
        check(
            f"FerretDB on PostgreSQL vs on SQLite: {name}",
            value,
            "ms",
            ceiling=sqlite,
            ceiling_label="FerretDB on SQLite, same run",
        )
        for name, value, sqlite in pairs
    ]
    return {
        "title": "FerretDB on PostgreSQL (its postgresql handler, on the stack's server) vs on SQLite",
        "status": "measured",
        "conditions": f"a FerretDB of this run on PostgreSQL database {server_database}'s server; drain of "
        f"{d['events']:,} events (consumer alone), queries over {q['stored_events']:,} events and stats over "
        f"{hours} hours (API alone), as scenarios 4, 6 and 11",
        "figures": figures,
        "details": {
            "drain": drained["details"],
            "drain_figures": d,
            "queries": read["details"],
            "stats": stats["latency"],
        },
        "checks": checks,
    }
