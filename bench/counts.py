"""Scenario 11: counts over time (GET /api/activities/stats), 720 hourly buckets (30 days by hour).

PostgreSQL's part runs over scenario 10's 1M events (bench/pg_queries.py). On MongoDB (FerretDB) the
counts live in one document per bucket (infrastructure/mongo/counts.py), so a stats request reads the
hour collection, whatever the number of events: what its cost depends on is how many hour documents
exist and how big they are. The FerretDB data set therefore fills every hour of the 30 days with one
event of each action, each read from another partition (so every hour document holds five actions and
five partitions' offsets, as a busy one does), through the service's own write path
(MongoActivityRepository.add_many with log positions, as the consumer calls it): 720 hour documents, as
1M events over the same 30 days would leave (3,600 events, not 1M: the figure does not depend on it).
A userId filter counts that user's events instead (on FerretDB a scan of every stored event: scenario 6
shows what that costs), so it is measured on PostgreSQL only.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import httpx

from activity_service.domain.activity import Activity
from activity_service.domain.delivery import LogPosition
from activity_service.domain.stats import Interval
from activity_service.infrastructure.mongo.store import open_mongo_store
from bench.checks import check
from bench.context import Context
from bench.data import ACTIONS, now_millis
from bench.drive import API_PATH
from bench.procs import AUTH_HEADERS, watch
from bench.reads import Kind, get, latency, timed
from bench.targets import Target

STATS_PATH = API_PATH + "/stats"
FILL_BATCH = 500


def mongo(
    ctx: Context, target: Target | None = None, *, phase: str = "stats", label: str = "ferretdb"
) -> dict[str, Any]:
    """FerretDB's part of scenario 11 (also scenario 13's, on another target): figures and checks."""
    plan = ctx.plan
    target = target or ctx.ferretdb
    names = ctx.names(phase)
    newest = now_millis() - timedelta(minutes=1)
    last_hour = Interval.HOUR.floor(newest)
    hours, filled = plan.stats_hours, min(plan.stats_fill_hours, plan.stats_hours)
    ctx.say(
        f"scenario 11 ({target.label}): storing {filled * len(ACTIONS):,} events over {filled} hours through "
        "the service's repository (events and their counts), then the API alone"
    )
    fill = asyncio.run(_fill(ctx, target, names.database, last_hour, filled))
    stats_range = {
        "interval": "hour",
        "startDate": (last_hour - timedelta(hours=hours - 1)).isoformat().replace("+00:00", "Z"),
        "endDate": newest.isoformat().replace("+00:00", "Z"),
    }
    kinds = {
        f"{hours} hourly buckets": Kind(STATS_PATH, dict(stats_range)),
        f"{hours} hourly buckets, groupBy=action": Kind(STATS_PATH, {**stats_range, "groupBy": "action"}),
        f"{hours} hourly buckets, one action": Kind(STATS_PATH, {**stats_range, "action": "click"}),
    }
    api = ctx.procs.start_api(f"api-{phase}", ctx.env(names, target))
    try:
        with httpx.Client(base_url=api.base_url, headers=AUTH_HEADERS, timeout=300) as client:
            answer = get(client, STATS_PATH, stats_range)
            counted = sum(b["total"] for b in answer["buckets"])
            buckets = len(answer["buckets"])
            with watch({"api": api.pid, **ctx.stack_pids}) as usage:
                timings = timed(client, kinds, plan.stats_samples, ctx.say)
    finally:
        ctx.procs.stop(api)
    measured = latency(timings)
    figures: dict[str, Any] = {}
    for name in kinds:
        figures[f"{label}: {name} p50_ms"] = measured[name]["p50_ms"]
        figures[f"{label}: {name} p99_ms"] = measured[name]["p99_ms"]
    figures |= {
        f"{label}: stored_events": fill["events"],
        f"{label}: events counted in the range": counted,
        f"{label}: buckets answered": buckets,
        f"{label}: hour documents": filled,
        f"{label}: fill_seconds": fill["seconds"],
        f"{label}: api_cpu_percent": usage["api"].cpu_percent,
    }
    checks = [
        check(f"{target.label}, {name}: p99 (p50 {v['p50_ms']:g} ms)", v["p99_ms"], "ms")
        for name, v in measured.items()
    ]
    return {
        "figures": figures,
        "checks": checks,
        "latency": measured,
        "main": measured[f"{hours} hourly buckets"],
        "counted_as_stored": counted == fill["events"],
    }


async def _fill(ctx: Context, target: Target, database: str, last_hour: Any, hours: int) -> dict[str, Any]:
    settings = ctx.settings(ctx.names("unused"), target)
    settings = target.apply(settings, database)
    events: list[tuple[Activity, LogPosition]] = []
    offsets = [0] * ctx.plan.partitions
    for h in range(hours):
        start = last_hour - timedelta(hours=hours - 1 - h)
        for a, action in enumerate(ACTIONS):
            partition = (h + a) % ctx.plan.partitions
            activity = Activity(
                id=f"stats-{ctx.run_id}-{h:05d}-{a}",
                user_id=f"bench-user-{(h * len(ACTIONS) + a) % 1000}",
                action=action,
                timestamp=start + timedelta(minutes=7),
                received_at=start + timedelta(minutes=7),
                metadata={"path": "/pricing", "n": h},
                ip_address="127.0.0.1",
            )
            events.append((activity, LogPosition("bench-stats", partition, offsets[partition])))
            offsets[partition] += 1
    began = time.perf_counter()
    async with open_mongo_store(settings.mongodb) as store:
        for i in range(0, len(events), FILL_BATCH):
            chunk = events[i : i + FILL_BATCH]
            await store.activities.add_many([e for e, _ in chunk], [p for _, p in chunk])
    return {"events": len(events), "seconds": round(time.perf_counter() - began, 2)}


def combine(ctx: Context, postgres: dict[str, Any] | None, mongo: dict[str, Any] | None) -> dict[str, Any]:
    """Scenario 11 from its two parts (either may have failed: its rows are then missing)."""
    hours = ctx.plan.stats_hours
    parts = [p for p in (postgres, mongo) if p]
    figures: dict[str, Any] = {}
    checks: list[dict[str, Any]] = []
    for part in parts:
        figures |= part["figures"]
        checks += part["checks"]
    return {
        "title": f"Counts over time: {hours} hourly buckets (30 days by hour)",
        "status": "measured",
        "conditions": "API alone (consumer stopped); sequential requests; PostgreSQL over scenario 10's "
        f"{ctx.plan.pg_query_events:,} events, FerretDB (SQLite) over {hours} hours of events written "
        "through the service's repository (the hour documents a stats request reads: one per hour, "
        "whatever the number of events)",
        "figures": figures,
        "details": {
            "explain": (postgres or {}).get("explain", {}),
            "ferretdb_latency": (mongo or {}).get("latency", {}),
            "missing": [name for name, part in (("postgresql", postgres), ("ferretdb", mongo)) if not part],
        },
        "checks": checks,
    }
