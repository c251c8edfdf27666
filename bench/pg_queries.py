"""Scenarios 10 and 11 (PostgreSQL): reads and counts over time with the API alone over 1M stored events.

The data set goes straight into a fresh database through the service's own migrations and its own insert
statement (repository.INSERT, so the counts over time are kept exactly as the consumer keeps them), on two
connections, 10,000 rows a statement; then VACUUM (ANALYZE), as autovacuum would leave a table that has
stopped growing (fresh statistics, a visibility map for index-only scans). 1000 users, 5 actions,
timestamps spread evenly over 30 days; event n is the n-th newest.

Then the API (STORE=postgresql, consumer stopped) serves, one request at a time and interleaved: the first
page in cursor mode (no `total`), each filter's first page, a keyset page 10,000 pages deep (the
`nextCursor` of page 10,000 in page mode, so both stand at the same depth), a get by id, the same first
pages in page mode (with `total`: a count of every match), page 10,000 in page mode, and the stats of
scenario 11 (720 hourly buckets). Last, EXPLAIN (ANALYZE, BUFFERS) of the exact statements the adapters
send for each shape (bench/pg_explain.py).
"""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson

from activity_service.domain.activity import DEFAULT_TENANT
from activity_service.domain.query import Position
from activity_service.domain.stats import Interval
from activity_service.infrastructure.postgres.counts import PostgresActivityCounts
from activity_service.infrastructure.postgres.migrations import migrate
from activity_service.infrastructure.postgres.repository import PostgresActivityRepository
from activity_service.infrastructure.postgres.rows import COLUMNS
from activity_service.infrastructure.postgres.store import _prepare
from activity_service.infrastructure.postgres.writes import INSERT
from activity_service.interfaces.http.cursor import encode_cursor
from activity_service.interfaces.http.schemas.reads import ListParams
from activity_service.interfaces.http.schemas.stats import StatsParams
from bench.checks import check
from bench.context import Context
from bench.data import ACTIONS, TEMPLATES, event_id, now_millis
from bench.drive import API_PATH
from bench.errors import BenchError
from bench.pg_explain import ExplainingPool, explain
from bench.procs import AUTH_HEADERS, watch
from bench.reads import Kind, get, latency, timed
from bench.targets import create_database, dsn_of

LIMIT = 10
QUERY_MAX_COUNT = 10_000  # the service's default: page mode's total stops there (totalCapped)
DEEPEST_PAGE = QUERY_MAX_COUNT // LIMIT
FILL_BATCH = 10_000
USER = "bench-user-7"
STATS_PATH = API_PATH + "/stats"
EXPECTED_COLUMNS = (
    "tenant",
    "id",
    "user_id",
    "action",
    '"timestamp"',
    "received_at",
    "metadata",
    "ip_address",
    "original_timestamp",
    "sent_at",
    "trace_id",
    "source",
    "fingerprint",
)


def run(ctx: Context) -> tuple[dict[str, Any], dict[str, Any]]:
    plan, target = ctx.plan, ctx.postgresql
    names = ctx.names("pgqueries")
    tag = f"p{ctx.run_id}"
    newest = now_millis() - timedelta(minutes=1)
    total = plan.pg_query_events
    asyncio.run(create_database(target.uri, names.database))
    ctx.say(
        f"scenario 10: inserting {total:,} events straight into PostgreSQL {names.database} (the service's "
        f"INSERT, {FILL_BATCH:,} a statement, two connections), then VACUUM (ANALYZE)"
    )
    fill = asyncio.run(_fill(dsn_of(target.uri, names.database), tag, newest, total))
    ctx.say(
        f"scenario 10: inserted at {fill['insert_rows_per_second']:,.0f} rows/s, vacuumed in "
        f"{fill['vacuum_seconds']:.1f}s ({fill['table_mb']:,.0f} MB with indexes); starting the API"
    )
    day = (newest - timedelta(days=15)).date().isoformat()
    deep_page = min(plan.pg_deep_pages, max(2, total // LIMIT - 1))
    deepest_page = min(DEEPEST_PAGE, max(1, total // LIMIT))  # a small (quick) table has fewer pages
    last_hour = Interval.HOUR.floor(newest)
    stats_range = {
        "interval": "hour",
        "startDate": (last_hour - timedelta(hours=plan.stats_hours - 1)).isoformat().replace("+00:00", "Z"),
        "endDate": newest.isoformat().replace("+00:00", "Z"),
    }
    cheap, costly = 1, max(1, plan.pg_query_samples // plan.pg_total_samples)
    lists: dict[str, dict[str, Any]] = {
        "first page": {"cursor": ""},
        "first page, userId": {"cursor": "", "userId": USER},
        "first page, action": {"cursor": "", "action": "click"},
        "first page, date range (1 day)": {"cursor": "", "startDate": day, "endDate": day},
        f"deep cursor page ({deep_page:,} pages in)": {},  # the nextCursor of page deep_page - 1
        "page mode: first page with total": {},
        "page mode: first page, userId, with total": {"userId": USER},
        "page mode: first page, action, with total": {"action": "click"},
        "page mode: first page, date range (1 day), with total": {"startDate": day, "endDate": day},
        # The API refuses page x limit past 10,000 (read bounds, #19): the deepest page it answers.
        f"page mode: page {deepest_page:,} with total": {"page": deepest_page},
    }
    deep_cursor = f"deep cursor page ({deep_page:,} pages in)"
    stats: dict[str, dict[str, Any]] = {
        f"{plan.stats_hours} hourly buckets": dict(stats_range),
        f"{plan.stats_hours} hourly buckets, groupBy=action": {**stats_range, "groupBy": "action"},
        f"{plan.stats_hours} hourly buckets, one action": {**stats_range, "action": "click"},
        f"{plan.stats_hours} hourly buckets, userId (counted from its events)": {
            **stats_range,
            "userId": USER,
        },
    }
    api = ctx.procs.start_api("api-pgqueries", ctx.env(names, target))
    try:
        with httpx.Client(base_url=api.base_url, headers=AUTH_HEADERS, timeout=300) as client:
            # The cursor that ends page deep_page - 1, made as the API makes it (its filters' fingerprint,
            # from a first page's cursor; the position of that page's last row, read from the table):
            # walking 10,000 pages first would take minutes.
            first = get(client, API_PATH, {"cursor": ""})
            lists[deep_cursor] = {
                "cursor": asyncio.run(
                    _cursor_at(
                        dsn_of(target.uri, names.database), first["nextCursor"], (deep_page - 1) * LIMIT
                    )
                )
            }
            cursor_page = get(client, API_PATH, lists[deep_cursor])
            deepest = get(client, API_PATH, {"page": deepest_page})
            correct = (
                cursor_page["data"][0]["id"] == event_id(tag, (deep_page - 1) * LIMIT)
                and deepest["data"][0]["id"] == event_id(tag, (deepest_page - 1) * LIMIT)
                and deepest["total"] == min(total, QUERY_MAX_COUNT)
            )
            totals = get(client, STATS_PATH, stats[f"{plan.stats_hours} hourly buckets"])
            counted = sum(b["total"] for b in totals["buckets"])
            kinds = {
                name: Kind(API_PATH, params, costly if name.startswith("page mode") else cheap)
                for name, params in lists.items()
            }
            kinds["get by id"] = Kind(f"{API_PATH}/{event_id(tag, total // 2)}")
            kinds |= {name: Kind(STATS_PATH, params) for name, params in stats.items()}
            ctx.say(
                f"scenarios 10 and 11: {plan.pg_query_samples} rounds over {len(kinds)} kinds of request, "
                f"one at a time (the page mode ones every {costly} rounds)"
            )
            with watch({"api": api.pid, **ctx.stack_pids}, database=names.database) as usage:
                timings = timed(client, kinds, plan.pg_query_samples, ctx.say)
    finally:
        ctx.procs.stop(api)
    ctx.say("scenario 10: EXPLAIN (ANALYZE, BUFFERS) of the statements behind each shape")
    plans = asyncio.run(_explain(dsn_of(target.uri, names.database), lists, stats, tag, total))
    measured = latency(timings)
    used = {k: vars(v) for k, v in usage.items()}
    ten = _scenario_ten(ctx, measured, lists, deep_cursor, deep_page, correct, fill, plans, used, total, day)
    eleven = _scenario_eleven_pg(ctx, measured, stats, plans, counted, total, newest)
    return ten, eleven


def _scenario_ten(
    ctx: Context,
    measured: dict[str, dict[str, float]],
    lists: dict[str, Any],
    deep_cursor: str,
    deep_page: int,
    correct: bool,
    fill: dict[str, Any],
    plans: dict[str, Any],
    used: dict[str, Any],
    total: int,
    day: str,
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for name in [*lists, "get by id"]:
        figures[f"{name} p50_ms"] = measured[name]["p50_ms"]
        figures[f"{name} p99_ms"] = measured[name]["p99_ms"]
    first = measured["first page"]
    count_plans = plans.get("page mode: first page with total", [])
    count_ms = count_plans[-1]["execution_ms"] if len(count_plans) > 1 else None
    figures |= {
        "stored_events": total,
        "insert_rows_per_second": fill["insert_rows_per_second"],
        "table_and_indexes_mb": fill["table_mb"],
        "total_count_of_1M_rows_server_ms": count_ms,
        "cost_of_total_on_first_page_p50_ms": round(
            measured["page mode: first page with total"]["p50_ms"] - first["p50_ms"], 2
        ),
        "deep_pages_return_expected_rows": correct,
        "api_cpu_percent": used.get("api", {}).get("cpu_percent"),
        "postgres_cpu_percent": used.get("postgres", {}).get("cpu_percent"),
    }
    checks = []
    for name in ("first page", "first page, userId", "first page, action", "first page, date range (1 day)"):
        checks.append(
            check(
                f"{name} (cursor mode): p99 (p50 {measured[name]['p50_ms']:g} ms)",
                measured[name]["p99_ms"],
                "ms",
                target=("<=", 20),
            )
        )
    deep = measured[deep_cursor]
    checks.append(
        check(
            f"{deep_cursor} p50 vs first page p50",
            deep["p50_ms"],
            "ms",
            ceiling=first["p50_ms"],
            ceiling_label="first page, cursor mode",
            target=("ratio<=", 1.2),
        )
    )
    checks.append(
        check(
            f"{deep_cursor} p99 vs first page p99",
            deep["p99_ms"],
            "ms",
            ceiling=first["p99_ms"],
            ceiling_label="first page, cursor mode",
        )
    )
    for name in [n for n in lists if n.startswith("page mode")]:
        checks.append(
            check(
                f"{name}: p50 (p99 {measured[name]['p99_ms']:g} ms)",
                measured[name]["p50_ms"],
                "ms",
                ceiling=first["p50_ms"],
                ceiling_label="first page, cursor mode (no total)",
            )
        )
    by_id = measured["get by id"]
    checks.append(check(f"get by id: p99 (p50 {by_id['p50_ms']:g} ms)", by_id["p99_ms"], "ms"))
    return {
        "title": f"Queries over {total:,} stored events on PostgreSQL",
        "status": "measured",
        "conditions": "API alone (STORE=postgresql, consumer stopped); sequential requests; limit 10; "
        "the table vacuumed and analyzed after the fill",
        "figures": figures,
        "details": {
            "latency": measured,
            "explain": plans,
            "deep_page": deep_page,
            "date": day,
            "fill": fill,
            "usage": used,
        },
        "checks": checks,
    }


def _scenario_eleven_pg(
    ctx: Context,
    measured: dict[str, dict[str, float]],
    stats: dict[str, Any],
    plans: dict[str, Any],
    counted: int,
    total: int,
    newest: datetime,
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for name in stats:
        figures[f"postgresql: {name} p50_ms"] = measured[name]["p50_ms"]
        figures[f"postgresql: {name} p99_ms"] = measured[name]["p99_ms"]
    figures["postgresql: stored_events"] = total
    figures["postgresql: events counted in the range"] = counted
    main = f"{ctx.plan.stats_hours} hourly buckets"
    checks = [
        check(
            f"PostgreSQL, {name}: p99 (p50 {measured[name]['p50_ms']:g} ms)",
            measured[name]["p99_ms"],
            "ms",
            target=("<=", 50) if name == main else None,
        )
        for name in stats
    ]
    return {"figures": figures, "checks": checks, "explain": {k: plans[k] for k in stats if k in plans}}


async def _cursor_at(dsn: str, first_cursor: str, rows_before: int) -> str:
    """The API's cursor for the unfiltered walk after its first ``rows_before`` rows."""
    fingerprint = orjson.loads(base64.urlsafe_b64decode(first_cursor + "=" * (-len(first_cursor) % 4)))["f"]
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        row = await connection.fetchrow(
            'SELECT "timestamp", id FROM activities WHERE tenant = $1'
            ' ORDER BY "timestamp" DESC, id DESC OFFSET $2 LIMIT 1',
            DEFAULT_TENANT,
            rows_before - 1,
        )
    finally:
        await connection.close()
    assert row is not None, "the table holds fewer rows than the deep page needs"
    return encode_cursor(Position(row["timestamp"], row["id"]), fingerprint)


async def _fill(dsn: str, tag: str, newest: datetime, total: int) -> dict[str, Any]:
    if tuple(COLUMNS) != EXPECTED_COLUMNS:
        raise BenchError(f"the activities columns changed ({COLUMNS}); update bench/pg_queries.py's fill")
    step = timedelta(days=30) / max(total, 1)
    connections = [await asyncpg.connect(dsn, timeout=10) for _ in range(2)]
    try:
        for connection in connections:
            await _prepare(connection)
        await migrate(connections[0])
        starts = list(range(0, total, FILL_BATCH))

        async def worker(connection: asyncpg.Connection) -> None:
            while starts:
                start = starts.pop(0)
                r = range(start, min(start + FILL_BATCH, total))
                rows = [
                    {
                        "tenant": DEFAULT_TENANT,
                        "id": event_id(tag, n),
                        "user_id": f"bench-user-{n % TEMPLATES}",
                        "action": ACTIONS[n % len(ACTIONS)],
                        "timestamp": newest - step * n,
                        "received_at": newest,
                        "metadata": {"path": "/pricing", "referrer": "newsletter", "n": n},
                        "ip_address": "127.0.0.1",
                    }
                    for n in r
                ]  # the other columns are null (absent keys)
                await connection.fetch(INSERT, orjson.dumps(rows).decode())

        began = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in connections))
        inserted = time.perf_counter() - began
        began = time.perf_counter()
        await connections[0].execute("VACUUM (ANALYZE) activities")
        await connections[0].execute("VACUUM (ANALYZE) activity_counts")
        vacuumed = time.perf_counter() - began
        size = await connections[0].fetchval("SELECT pg_total_relation_size('activities')")
    finally:
        for connection in connections:
            await connection.close()
    return {
        "insert_rows_per_second": round(total / inserted, 1),
        "insert_seconds": round(inserted, 2),
        "vacuum_seconds": round(vacuumed, 2),
        "table_mb": round(size / 1_048_576, 1),
    }


async def _explain(
    dsn: str, lists: dict[str, Any], stats: dict[str, Any], tag: str, total: int
) -> dict[str, Any]:
    connection = await asyncpg.connect(dsn, timeout=30)
    try:
        await _prepare(connection)
        pool = ExplainingPool(connection)
        repository = PostgresActivityRepository(pool)  # type: ignore[arg-type]
        counts = PostgresActivityCounts(pool)  # type: ignore[arg-type]
        plans: dict[str, Any] = {}
        for name, params in lists.items():
            query = ListParams(**_as_lists(params)).to_query(
                DEFAULT_TENANT
            )  # what the API asks the repository
            plans[name] = await explain(pool, lambda q=query: repository.find(q))
        plans["get by id"] = await explain(
            pool, lambda: repository.get(DEFAULT_TENANT, event_id(tag, total // 2))
        )
        for name, params in stats.items():
            query = StatsParams(**_as_lists(params)).to_query(DEFAULT_TENANT)
            plans[name] = await explain(pool, lambda q=query: counts.count(q))
    finally:
        await connection.close()
    return plans


def _as_lists(params: dict[str, Any]) -> dict[str, Any]:
    """Query parameters as the API parses them (a repeatable one is a list)."""
    return {k: [v] if k == "action" and isinstance(v, str) else v for k, v in params.items()}
