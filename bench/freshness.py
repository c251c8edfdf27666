"""Scenario 5, freshness: at half the events/s of scenario 2, the time from a 202 to the event being stored.

Probe events with known ids are posted among wrk's paced (open-loop) background load; their rows are
polled every POLL_SECONDS, straight from FerretDB's SQLite file through its `_id` index where the local
stack runs it (see store.SqliteVisibility), else with find_one by `_id`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from bench import wrk
from bench.checks import check
from bench.context import Context
from bench.drive import API_PATH
from bench.errors import BenchError
from bench.procs import AUTH_HEADERS, Names, Service, watch
from bench.stats import ms, percentile
from bench.store import SqliteVisibility

POLL_SECONDS = 0.005


def run(
    ctx: Context, api: Service, consumer: Service, names: Names, single_eps: float | None
) -> dict[str, Any]:
    plan = ctx.plan
    if not single_eps:
        raise BenchError("scenario 5 needs scenario 2's events/s (half of it is the load); scenario 2 failed")
    target_rate = single_eps / 2
    probe_rate = min(plan.freshness_probes_per_second, target_rate / 4)
    background_rate = target_rate - probe_rate
    visibility = SqliteVisibility.find(names.database, "activities")
    ctx.say(
        f"scenario 5: {target_rate:,.0f} events/s in all ({background_rate:,.0f}/s wrk paced + "
        f"{probe_rate:.0f}/s probes) for {plan.freshness_seconds}s; visibility read "
        + ("from FerretDB's SQLite file by _id index" if visibility else "by find_one over the wire")
    )
    with watch({"api": api.pid, "consumer": consumer.pid, **ctx.stack_pids}) as usage:
        probes, background = asyncio.run(_probe(ctx, api, visibility, names, probe_rate, background_rate))
    if visibility is not None:
        visibility.close()
    delays = [p["visible"] - p["accepted"] for p in probes if p.get("visible") is not None]
    answered = [p for p in probes if p.get("accepted") is not None]
    unseen = len(answered) - len(delays)
    achieved = background.requests_per_second + len(answered) / plan.freshness_seconds
    p50, p99 = ms(percentile(delays, 50)), ms(percentile(delays, 99))
    ctx.say(f"scenario 5: 202 -> stored p50 {p50} ms, p99 {p99} ms over {len(delays)} probes")
    return {
        "title": "Freshness: 202 to stored (visible by id), at half of scenario 2's max load",
        "status": "measured",
        "conditions": "API + consumer running together; wrk paced (open loop) plus probe events",
        "figures": {
            "freshness_p50_ms": p50,
            "freshness_p99_ms": p99,
            "freshness_max_ms": ms(max(delays, default=0.0)),
            "probes_measured": len(delays),
            "probes_not_seen": unseen,
            "probe_post_p50_ms": ms(percentile([p["accepted"] - p["sent"] for p in answered], 50)),
            "target_events_per_second": round(target_rate, 1),
            "achieved_events_per_second": round(achieved, 1),
            "background_errors": background.failed,
            "background_answered_503": background.answered(503),
            "api_cpu_percent": usage["api"].cpu_percent,
            "consumer_cpu_percent": usage["consumer"].cpu_percent,
            "database_cpu_percent": usage["ferretdb"].cpu_percent if "ferretdb" in usage else None,
        },
        "details": {
            "background": background.as_dict(),
            "poll_interval_ms": POLL_SECONDS * 1000,
            "visibility_check": "sqlite _id index (read-only)" if visibility else "find_one by _id",
        },
        "checks": [
            check(
                "freshness load: achieved vs half of scenario 2",
                round(achieved, 1),
                "events/s",
                ceiling=round(target_rate, 1),
                ceiling_label="0.5 x scenario 2",
            ),
            check("freshness p50 (202 -> stored)", p50 / 1000, "s"),
            check("freshness p99 (202 -> stored)", p99 / 1000, "s", target=("<=", 0.5)),
        ],
    }


async def _probe(
    ctx: Context,
    api: Service,
    visibility: SqliteVisibility | None,
    names: Names,
    probe_rate: float,
    background_rate: float,
) -> tuple[list[dict[str, Any]], Any]:
    plan = ctx.plan
    probes: list[dict[str, Any]] = []
    pending: dict[str, dict[str, Any]] = {}
    loop = asyncio.get_running_loop()
    background_task = loop.run_in_executor(
        None,
        lambda: wrk.run(
            ctx.wrk,
            api.base_url + API_PATH,
            mode="single",
            # Scenario 2's connections: at half its rate they are never all busy, so pacing holds.
            connections=plan.single_connections,
            threads=plan.wrk_threads,
            seconds=plan.freshness_seconds,
            users=plan.users,
            timestamp=ctx.timestamp,
            rate_per_second=background_rate,
        ),
    )
    mongo: Any = None
    if visibility is None:
        from pymongo import AsyncMongoClient

        mongo = AsyncMongoClient(ctx.mongo)[names.database]["activities"]

    async def post(client: httpx.AsyncClient, n: int) -> None:
        probe: dict[str, Any] = {"id": f"probe-{ctx.run_id}-{n:06d}", "sent": time.perf_counter()}
        probes.append(probe)
        body = {
            "userId": f"bench-probe-{n % 50}",
            "action": "probe",
            "id": probe["id"],
            "timestamp": ctx.timestamp,
            "metadata": {"n": n},
        }
        response = await client.post(API_PATH, json=body)
        if response.status_code == 202:
            probe["accepted"] = time.perf_counter()
            pending[probe["id"]] = probe

    async def poll() -> None:
        while True:
            if pending:
                ids = list(pending)
                if visibility is not None:
                    seen = visibility.stored(ids)
                else:
                    assert mongo is not None
                    found = await asyncio.gather(*(mongo.find_one({"_id": i}, {"_id": 1}) for i in ids))
                    seen = {d["_id"] for d in found if d}
                now = time.perf_counter()
                for event_id in seen:
                    pending.pop(event_id)["visible"] = now
            await asyncio.sleep(POLL_SECONDS)

    poller = asyncio.create_task(poll())
    async with httpx.AsyncClient(base_url=api.base_url, headers=AUTH_HEADERS, timeout=30) as client:
        posts = []
        started = time.perf_counter()
        n = 0
        while time.perf_counter() - started < plan.freshness_seconds:
            posts.append(asyncio.create_task(post(client, n)))
            n += 1
            await asyncio.sleep(max(0.0, started + n / probe_rate - time.perf_counter()))
        await asyncio.gather(*posts)
        background = await background_task
        for _ in range(600):  # the stragglers: up to 30 s more
            if not pending:
                break
            await asyncio.sleep(0.05)
        # The probe's notion of "visible" must agree with the API's: a stored probe is a 200 by id.
        for probe in [p for p in probes if p.get("visible")][:3]:
            response = await client.get(f"{API_PATH}/{probe['id']}")
            if response.status_code != 200:
                raise BenchError(
                    f"probe {probe['id']} was seen in the database but GET by id answered "
                    f"{response.status_code}: the visibility check is wrong; fix bench/store.py"
                )
    poller.cancel()
    return probes, background
