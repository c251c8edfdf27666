"""Scenario 4: the consumer drains a pre-filled topic into the database, with no API running.

The topic is filled first by a raw producer (the service's producer and codec). Then one consumer process
starts and drains it; the rate is taken from its committed offsets (polled twice a second), from its first
commit to its last, so the group join is not counted. The ceiling is raw insert_many of the same documents
in batches of the consumer's size (CONSUMER_MAX_BATCH_RECORDS) into the same database, same indexes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from bench.broker import committed, end_offsets, produce
from bench.checks import check
from bench.context import Context
from bench.data import Messages
from bench.errors import BenchError
from bench.procs import watch
from bench.prometheus import consumer_breakdown, scrape
from bench.store import mongo_database, raw_insert_rate

CEILING_COLLECTION = "raw_insert_ceiling"


def drain(ctx: Context) -> dict[str, Any]:
    """The measured drain; returns scenario 4 without its ceiling (see ``with_ceiling``)."""
    plan = ctx.plan
    names = ctx.names("drain")
    settings = ctx.settings(names)
    messages = Messages(f"d{ctx.run_id}")
    extra = plan.profile_events if ctx.py_spy else 0
    ctx.say(f"scenario 4: pre-filling {names.topic} with {plan.drain_events + extra:,} events (raw producer)")
    fill_rate = asyncio.run(produce(settings, plan.drain_events + extra, messages.message))
    ctx.say(f"scenario 4: pre-filled at {fill_rate:,.0f} events/s; starting one consumer (API not running)")
    spawned = time.perf_counter()
    consumer = ctx.procs.start_consumer("consumer-drain", ctx.env(names))
    try:
        with watch({"consumer": consumer.pid, **ctx.stack_pids}) as usage:
            drained = asyncio.run(_drain(ctx, names.group, names.topic, plan.drain_events, consumer))
        # The consumer's own account of its time (its Prometheus metrics), taken as the drain ends.
        own = consumer_breakdown(scrape(consumer.metrics_url), time.perf_counter() - spawned)
        profile = None
        if extra and drained["complete"]:
            # The events beyond the measured count: drained while py-spy samples the consumer.
            rate = max(drained["events_per_second"], 1.0)
            seconds = max(1.0, min(plan.profile_seconds, 0.8 * extra / rate))
            sampler = ctx.sampler(consumer.pid, "consumer-drain", seconds)
            if sampler is not None:
                ctx.say(
                    f"profile: py-spy on the consumer draining the next events, {seconds:.0f}s (not measured)"
                )
                profile = sampler.finish()
    finally:
        ctx.procs.stop(consumer)
    dead = asyncio.run(end_offsets(ctx.kafka, settings.kafka.dead_letter_topic))
    ctx.say(
        f"scenario 4: drained {drained['events']:,} events at {drained['events_per_second']:,.0f} events/s "
        f"({dead} dead-lettered)"
    )
    used = {k: vars(v) for k, v in usage.items()}
    batch = settings.consumer.max_batch_records
    return {
        "title": f"Consumer: drain a pre-filled topic of {plan.drain_events:,} events into the database",
        "status": "measured",
        "conditions": "consumer alone (no API process); one consumer, "
        f"{plan.partitions} partitions, batches of up to {batch}",
        "figures": {
            "events_per_second": drained["events_per_second"],
            "events": drained["events"],
            "drain_seconds": drained["seconds"],
            "startup_seconds": drained["startup_seconds"],
            "dead_lettered": dead,
            "prefill_events_per_second": round(fill_rate, 1),
            "consumer_cpu_percent": used["consumer"]["cpu_percent"],
            "consumer_peak_rss_mb": used["consumer"]["peak_rss_mb"],
            "database_cpu_percent": used.get("ferretdb", {}).get("cpu_percent"),
            "broker_cpu_percent": used.get("kafka", {}).get("cpu_percent"),
            "drain_first_tenth_events_per_second": drained["first_tenth_events_per_second"],
            "drain_last_tenth_events_per_second": drained["last_tenth_events_per_second"],
            **own,
        },
        "details": {
            "drain": drained,
            "usage": used,
            "reduced_from_1M": plan.drain_events < 1_000_000,
            "profile": profile,
            "database": names.database,
            "messages_tag": messages.tag,
        },
        "checks": [],
    }


def with_ceiling(ctx: Context, four: dict[str, Any]) -> dict[str, Any]:
    """Scenario 4's ceiling, with the API and the consumer stopped, into the drain's database. A phase of
    its own, so that a database restart by someone else repeats only this part."""
    batch = ctx.settings(ctx.names("drain")).consumer.max_batch_records
    count = ctx.plan.drain_ceiling_events
    ctx.say(f"scenario 4 ceiling: raw insert_many of {count:,} documents, {batch} a batch")
    messages = Messages(four["details"]["messages_tag"])
    with watch(ctx.stack_pids) as usage:
        ceiling = asyncio.run(_ceiling(ctx, four["details"]["database"], messages, batch))
    ctx.say(f"scenario 4 ceiling: {ceiling['events_per_second']:,.0f} events/s")
    four = {**four, "figures": dict(four["figures"]), "details": {**four["details"], "ceiling": ceiling}}
    four["figures"].update(
        {
            "database_cpu_percent_during_raw_insert": (
                usage["ferretdb"].cpu_percent if "ferretdb" in usage else None
            ),
            "raw_insert_events_per_second": ceiling["events_per_second"],
            "raw_insert_events": ceiling["events"],
            "raw_insert_batch_p50_ms": ceiling["batch_p50_ms"],
            "raw_insert_batch_p99_ms": ceiling["batch_p99_ms"],
            "raw_insert_first_tenth_events_per_second": ceiling["first_tenth_events_per_second"],
            "raw_insert_last_tenth_events_per_second": ceiling["last_tenth_events_per_second"],
        }
    )
    four["checks"] = [
        check(
            "consumer drain vs raw insert_many",
            four["figures"]["events_per_second"],
            "events/s",
            ceiling=ceiling["events_per_second"],
            ceiling_label="raw insert_many, same docs and batch size",
            target=("ratio>=", 0.8),
        ),
    ]
    return four


async def _drain(ctx: Context, group: str, topic: str, total: int, consumer: Any) -> dict[str, Any]:
    admin = AIOKafkaAdminClient(bootstrap_servers=ctx.kafka, client_id="bench-admin")
    await admin.start()
    started = time.perf_counter()
    first: tuple[float, int] | None = None
    last = (started, 0)
    polls: list[tuple[float, int]] = []
    report = started
    # The budget: at worst 1,000 events/s, and never less than two minutes.
    deadline = started + max(120.0, total / 1000)
    # Committed offsets beyond ``total`` (the profile's extra events) are not part of the measurement.
    try:
        while True:
            done = min(total, await committed(admin, group, topic))
            now = time.perf_counter()
            if done > 0 and first is None:
                first = (now, done)
            last = (now, done)
            polls.append(last)
            if done >= total:
                break
            if consumer.process.poll() is not None:
                raise BenchError(
                    f"the consumer exited ({consumer.process.returncode}) while draining; "
                    f"its log ({consumer.log}) ends with:\n{consumer.log_tail()}"
                )
            if now > deadline:
                ctx.say(
                    f"scenario 4: drain budget exhausted at {done:,}/{total:,}; measuring what was drained"
                )
                break
            if now - report >= 15:
                report = now
                ctx.say(f"scenario 4: {done:,}/{total:,} stored and committed")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    if first is None:
        raise BenchError("the consumer committed nothing: see its log " + str(consumer.log))
    span = last[0] - first[0]
    drained = last[1] - first[1]
    includes_startup = span < 1.0  # a tiny drain: too few polls between first and last commit
    if includes_startup:
        span, drained = last[0] - started, last[1]
    return {
        "events": last[1],
        "events_per_second": round(drained / span, 1) if span > 0 else 0.0,
        "first_tenth_events_per_second": _rate_between(polls, 0, total // 10),
        "last_tenth_events_per_second": _rate_between(polls, total - total // 10, total),
        "seconds": round(span, 3),
        "startup_seconds": round(first[0] - started, 3),
        "complete": last[1] >= total,
        "rate_includes_startup": includes_startup,
    }


async def _ceiling(ctx: Context, database: str, messages: Messages, batch: int) -> dict[str, float]:
    settings = ctx.settings(ctx.names("drain"))
    settings = settings.model_copy(
        update={"mongodb": settings.mongodb.model_copy(update={"database": database})}
    )
    async with mongo_database(settings) as db:
        await db.drop_collection(CEILING_COLLECTION)  # a repeat after a database restart starts over
        return await raw_insert_rate(
            db[CEILING_COLLECTION], ctx.plan.drain_ceiling_events, batch, messages.documents
        )


def _rate_between(polls: list[tuple[float, int]], low: int, high: int) -> float:
    """Events/s while the committed count went from ``low`` to ``high`` (from the polls around them)."""
    before = [p for p in polls if p[1] <= low]
    after = [p for p in polls if p[1] >= high]
    if not before or not after or after[0][0] <= before[-1][0]:
        return 0.0
    start, end = before[-1], after[0]
    return round((end[1] - start[1]) / (end[0] - start[0]), 1)
