"""Scenarios 7 and 5: the whole pipeline (API + consumer + broker + database) on the two cores.

7. Memory: peak RSS of the API and of the consumer under scenario 2's load, then under 3x the
   connections (overload: the API is already saturated, so the extra requests queue in it).
5. Freshness (bench/freshness.py), once the consumer has caught up.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench import freshness, wrk
from bench.broker import committed, end_offsets
from bench.checks import check
from bench.context import Context
from bench.drive import API_PATH
from bench.errors import BenchError
from bench.procs import Names, Service, watch

POLL_SECONDS = 0.005


def run(ctx: Context, single_eps: float | None) -> tuple[dict[str, Any], dict[str, Any]]:
    names = ctx.names("live")
    env = ctx.env(names)
    ctx.say("scenarios 7 and 5: starting a consumer and the API on a fresh topic and database")
    consumer = ctx.procs.start_consumer("consumer-live", env)
    api = ctx.procs.start_api("api-live", env)
    try:
        seven = memory(ctx, api, consumer)
        _wait_caught_up(ctx, names, consumer)
        five = freshness.run(ctx, api, consumer, names, single_eps)
    finally:
        ctx.procs.stop(api)
        ctx.procs.stop(consumer)
    return seven, five


def memory(ctx: Context, api: Service, consumer: Service) -> dict[str, Any]:
    plan = ctx.plan
    url = api.base_url + API_PATH
    common: dict[str, Any] = {
        "mode": "single",
        "threads": plan.wrk_threads,
        "users": plan.users,
        "timestamp": ctx.timestamp,
    }
    wrk.run(ctx.wrk, url, connections=plan.single_connections, seconds=plan.warmup_seconds, **common)
    phases: dict[str, Any] = {}
    for label, connections in (
        ("load", plan.single_connections),
        ("overload", plan.single_connections * plan.overload_factor),
    ):
        ctx.say(f"scenario 7: {label}: wrk POST, {connections} connections, {plan.memory_seconds}s")
        with watch({"api": api.pid, "consumer": consumer.pid}) as usage:
            result = wrk.run(ctx.wrk, url, connections=connections, seconds=plan.memory_seconds, **common)
        phases[label] = {"wrk": result.as_dict(), "usage": {k: vars(v) for k, v in usage.items()}}
        ctx.say(
            f"scenario 7: {label}: API peak {usage['api'].peak_rss_mb} MB, consumer peak "
            f"{usage['consumer'].peak_rss_mb} MB, {result.requests_per_second:,.0f} req/s, "
            f"p99 {result.latency_ms['p99']} ms"
        )
    api_peak = max(p["usage"]["api"]["peak_rss_mb"] for p in phases.values())
    figures = {
        f"{who}_peak_rss_mb_{label}": phases[label]["usage"][who]["peak_rss_mb"]
        for label in phases
        for who in ("api", "consumer")
    }
    figures["overload_connections"] = plan.single_connections * plan.overload_factor
    for label, phase in phases.items():
        statuses, seconds = phase["wrk"]["statuses"], phase["wrk"]["seconds"]
        answered = sum(statuses.values()) or 1
        figures[f"{label}_accepted_202_per_second"] = round(statuses.get("202", 0) / seconds, 1)
        figures[f"{label}_shed_503_per_second"] = round(statuses.get("503", 0) / seconds, 1)
        figures[f"{label}_shed_503_share"] = round(statuses.get("503", 0) / answered, 3)
        figures[f"{label}_other_errors"] = sum(phase["wrk"]["errors"].values()) - statuses.get("503", 0)
    return {
        "title": "Memory: peak RSS under scenario 2's load and under 3x overload",
        "status": "measured",
        "conditions": "API + consumer running together (the consumer stores what the API accepts); "
        f"overload is {plan.overload_factor}x scenario 2's connections, and what the API's overload guard "
        "refuses (503 at once, nothing accepted) is counted apart from what it accepts",
        "figures": figures,
        "details": phases,
        "checks": [
            check("API peak RSS, load and overload", api_peak, "MB", target=("<=", 150)),
            check(
                "consumer peak RSS, load and overload",
                max(p["usage"]["consumer"]["peak_rss_mb"] for p in phases.values()),
                "MB",
            ),
        ],
    }


def _wait_caught_up(ctx: Context, names: Names, consumer: Service, timeout: float = 300) -> None:
    async def lag() -> int:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=ctx.kafka)
        await admin.start()
        try:
            return await end_offsets(ctx.kafka, names.topic) - await committed(
                admin, names.group, names.topic
            )
        finally:
            await admin.close()

    deadline = time.monotonic() + timeout
    while (behind := asyncio.run(lag())) > 0:
        if time.monotonic() > deadline or consumer.process.poll() is not None:
            raise BenchError(
                f"the consumer did not catch up ({behind} events behind after {timeout:.0f}s). "
                f"Its log ({consumer.log}) ends with:\n{consumer.log_tail()}"
            )
        time.sleep(0.5)
