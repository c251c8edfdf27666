"""Scenario 6: reads with the API alone (consumer stopped) over a stored data set.

The data set is inserted straight into a fresh database with big insert_many batches (the consumer's
speed is scenario 4's business), then the API serves first pages for each filter, a deep offset page and
a deep cursor page (the `nextCursor` of that deep offset page, so both stand at the same depth), and a
get by id. Requests are sequential, one at a time, interleaved across the kinds so noise spreads evenly.
The server's explain output for each shape is recorded: it says what the database could push down.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import httpx

from activity_service.infrastructure.mongo.repository import SORT
from activity_service.infrastructure.settings import QuerySettings
from bench.checks import check
from bench.context import Context
from bench.data import event_id, now_millis, query_documents
from bench.drive import API_PATH
from bench.errors import BenchError
from bench.procs import AUTH_HEADERS
from bench.stats import ms, percentile
from bench.store import ensure_indexes, explain, insert_all, mongo_database
from bench.targets import Target

LIMIT = 10


def run(
    ctx: Context,
    target: Target | None = None,
    *,
    phase: str = "queries",
    events: int | None = None,
    number: str = "6",
) -> dict[str, Any]:
    plan = ctx.plan
    target = target or ctx.ferretdb
    names = ctx.names(phase)
    tag = f"q{ctx.run_id}"
    newest = now_millis() - timedelta(minutes=1)
    total = events if events is not None else plan.query_events
    ctx.say(
        f"scenario {number}: inserting {total:,} events straight into {names.database} on {target.label} "
        "(insert_many, 5,000 a batch)"
    )
    insert_rate, plans = asyncio.run(_fill(ctx, target, names, tag, newest, total))
    ctx.say(f"scenario {number}: inserted at {insert_rate:,.0f} docs/s; starting the API (consumer stopped)")
    day = (newest - timedelta(days=15)).date().isoformat()
    # Halfway down, but within the offset depth the API serves (QUERY_MAX_DEPTH: past it, a 400 says to
    # walk with a cursor): 1,000 pages of 10 at the default.
    deep_page = max(2, min(total // (2 * LIMIT), QuerySettings.explicit().max_depth // LIMIT))
    kinds: dict[str, dict[str, Any]] = {
        "first page": {},
        "first page, userId": {"userId": "bench-user-7"},
        "first page, action": {"action": "click"},
        "first page, date range (1 day)": {"startDate": day, "endDate": day},
        "first page, cursor mode": {"cursor": ""},
        "deep offset page": {"page": deep_page},
        "deep cursor page": {},  # filled in with the deep offset page's nextCursor
        "get by id": {},
    }
    api = ctx.procs.start_api(f"api-{phase}", ctx.env(names, target))
    timings: dict[str, list[float]] = {k: [] for k in kinds}
    try:
        with httpx.Client(base_url=api.base_url, headers=AUTH_HEADERS, timeout=300) as client:
            deep = _get(client, API_PATH, kinds["deep offset page"])
            kinds["deep cursor page"] = {"cursor": deep["nextCursor"]}
            cursor_page = _get(client, API_PATH, kinds["deep cursor page"])
            correct = deep["data"][0]["id"] == event_id(tag, (deep_page - 1) * LIMIT) and cursor_page["data"][
                0
            ]["id"] == event_id(tag, deep_page * LIMIT)
            by_id = f"{API_PATH}/{event_id(tag, total // 2)}"
            ctx.say(
                f"scenario {number}: {plan.query_samples} samples of {len(kinds)} kinds of request, "
                "one at a time"
            )
            for sample in range(plan.query_samples):
                for kind, params in kinds.items():
                    path = by_id if kind == "get by id" else API_PATH
                    began = time.perf_counter()
                    _get(client, path, params)
                    timings[kind].append(time.perf_counter() - began)
                ctx.say(
                    f"scenario {number}: sample {sample + 1}/{plan.query_samples}: first page "
                    f"{ms(timings['first page'][-1])} ms, "
                    f"deep cursor {ms(timings['deep cursor page'][-1])} ms"
                )
    finally:
        ctx.procs.stop(api)
    latency = {
        k: {"p50_ms": ms(percentile(v, 50)), "p99_ms": ms(percentile(v, 99)), "samples": len(v)}
        for k, v in timings.items()
    }
    first = latency["first page, cursor mode"]["p50_ms"]
    per_doc_us = round(1000 * latency["first page"]["p50_ms"] / total, 3)
    figures: dict[str, Any] = {f"{k} p50_ms": v["p50_ms"] for k, v in latency.items()}
    figures |= {f"{k} p99_ms": v["p99_ms"] for k, v in latency.items()}
    figures |= {
        "stored_events": total,
        "insert_docs_per_second": round(insert_rate, 1),
        "first_page_ms_per_1000_docs": per_doc_us,
        "deep_pages_return_expected_rows": correct,
    }
    checks = [
        check(f"{kind}: p50 (p99 {v['p99_ms']:g} ms)", v["p50_ms"], "ms") for kind, v in latency.items()
    ]
    checks.append(
        check(
            "deep cursor page p50 vs first cursor page p50",
            latency["deep cursor page"]["p50_ms"],
            "ms",
            ceiling=first,
            ceiling_label="first page, cursor mode",
            target=("ratio<=", 1.2),
        )
    )
    checks.append(
        check(
            "deep offset page p50 vs first page p50",
            latency["deep offset page"]["p50_ms"],
            "ms",
            ceiling=latency["first page"]["p50_ms"],
            ceiling_label="first page, page mode",
        )
    )
    return {
        "title": f"Queries over {total:,} stored events on {target.label}",
        "status": "measured",
        "conditions": "API alone (consumer stopped); sequential requests; limit 10",
        "figures": figures,
        "details": {"latency": latency, "explain": plans, "deep_page": deep_page, "date": day},
        "checks": checks,
    }


def _get(client: httpx.Client, path: str, params: dict[str, Any]) -> dict[str, Any]:
    response = client.get(path, params=params)
    if response.status_code != 200:
        raise BenchError(f"GET {path} {params} answered {response.status_code}: {response.text[:500]}")
    body: dict[str, Any] = response.json()
    if "data" in body and not body["data"]:
        raise BenchError(
            f"GET {path} {params} returned no rows; the query data set is not what the bench expects"
        )
    return body


async def _fill(
    ctx: Context, target: Target, names: Any, tag: str, newest: Any, total: int
) -> tuple[float, dict[str, Any]]:
    async with mongo_database(ctx.settings(names, target)) as database:
        collection = database["activities"]
        await ensure_indexes(collection)
        rate = await insert_all(collection, query_documents(tag, 0, total, newest), batch=5000)
        sort = dict(SORT)
        shapes = {
            "first page (no filter, sorted)": {"filter": {}, "sort": sort, "limit": LIMIT + 1},
            "userId filter, sorted": {"filter": {"userId": "bench-user-7"}, "sort": sort, "limit": LIMIT + 1},
            "action filter, sorted": {"filter": {"action": "click"}, "sort": sort, "limit": LIMIT + 1},
            "timestamp range, sorted": {
                "filter": {
                    "timestamp": {"$gte": newest - timedelta(days=16), "$lte": newest - timedelta(days=15)}
                },
                "sort": sort,
                "limit": LIMIT + 1,
            },
            "by _id": {"filter": {"_id": event_id(tag, total // 2)}, "limit": 1},
        }
        plans = {
            name: await explain(database, {"find": "activities", **shape}) for name, shape in shapes.items()
        }
        return rate, plans
