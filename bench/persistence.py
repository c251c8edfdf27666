"""Scenarios 4 and 9: the consumer drains a pre-filled topic into the database, with no API running.

The topic is filled first by a raw producer (the service's producer and codec). Then one consumer process
starts and drains it; the rate is taken from its committed offsets (polled five times a second), from its
first commit to its last, so the group join is not counted. The ceiling, in the same database:

- 4, MongoDB (FerretDB): raw insert_many of the same documents in batches of the consumer's size
  (CONSUMER_MAX_BATCH_RECORDS), same indexes;
- 9, PostgreSQL: asyncpg's bulk insert of the same rows, same batch size, same conflict handling, into
  tables made by the service's migrations (bench/pg_ceiling.py).
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
from bench.pg_ceiling import BARE_VARIANTS
from bench.pg_ceiling import ceiling as pg_ceiling
from bench.procs import watch
from bench.prometheus import consumer_breakdown, scrape
from bench.store import mongo_database, raw_insert_rate
from bench.targets import Target, create_database

CEILING_COLLECTION = "raw_insert_ceiling"


def drain(
    ctx: Context,
    target: Target | None = None,
    *,
    phase: str = "drain",
    events: int | None = None,
    number: str = "4",
    server_pids: dict[str, int] | None = None,
    pg_database: str | None = None,
    profile: bool = True,
) -> dict[str, Any]:
    """The measured drain into ``target`` (default: the local FerretDB); returns the scenario without its
    ceiling (see ``with_ceiling`` and ``with_pg_ceiling``). ``server_pids`` are the database's processes
    whose CPU is reported (default: the local stack's for that store); ``pg_database`` is the PostgreSQL
    database whose backends count (default: the phase's)."""
    plan = ctx.plan
    target = target or ctx.ferretdb
    names = ctx.names(phase)
    settings = ctx.settings(names, target)
    total = events if events is not None else plan.drain_events
    messages = Messages(f"{phase[0]}{ctx.run_id}")
    extra = plan.profile_events if ctx.py_spy and profile else 0
    if target.store == "postgresql":
        asyncio.run(create_database(target.uri, names.database))
    ctx.say(f"scenario {number}: pre-filling {names.topic} with {total + extra:,} events (raw producer)")
    fill_rate = asyncio.run(produce(settings, total + extra, messages.message))
    ctx.say(
        f"scenario {number}: pre-filled at {fill_rate:,.0f} events/s; starting one consumer into "
        f"{target.label} (API not running)"
    )
    servers = server_pids if server_pids is not None else _servers_of(ctx, target)
    spawned = time.perf_counter()
    consumer = ctx.procs.start_consumer(f"consumer-{phase}", ctx.env(names, target))
    try:
        with watch({"consumer": consumer.pid, **servers}, database=pg_database or names.database) as usage:
            drained = asyncio.run(_drain(ctx, names.group, names.topic, total, consumer, number))
        # The consumer's own account of its time (its Prometheus metrics), taken as the drain ends.
        own = consumer_breakdown(scrape(consumer.metrics_url), time.perf_counter() - spawned)
        profile = None
        if extra and drained["complete"]:
            # The events beyond the measured count: drained while py-spy samples the consumer.
            rate = max(drained["events_per_second"], 1.0)
            seconds = max(1.0, min(plan.profile_seconds, 0.8 * extra / rate))
            sampler = ctx.sampler(consumer.pid, f"consumer-{phase}", seconds)
            if sampler is not None:
                ctx.say(
                    f"profile: py-spy on the consumer draining the next events, {seconds:.0f}s (not measured)"
                )
                profile = sampler.finish()
    finally:
        ctx.procs.stop(consumer)
    dead = asyncio.run(end_offsets(ctx.kafka, settings.kafka.dead_letter_topic))
    ctx.say(
        f"scenario {number}: drained {drained['events']:,} events at {drained['events_per_second']:,.0f} "
        f"events/s ({dead} dead-lettered)"
    )
    used = {k: vars(v) for k, v in usage.items()}
    batch = settings.consumer.max_batch_records
    return {
        "title": f"Consumer: drain a pre-filled topic of {total:,} events into {target.label}",
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
            "database_cpu_percent": _database_cpu(used, servers),
            "broker_cpu_percent": used.get("kafka", {}).get("cpu_percent"),
            "consumer_cpu_us_per_event": _us(used["consumer"]["cpu_percent"], drained["events_per_second"]),
            "database_cpu_us_per_event": _us(_database_cpu(used, servers), drained["events_per_second"]),
            "drain_first_tenth_events_per_second": drained["first_tenth_events_per_second"],
            "drain_last_tenth_events_per_second": drained["last_tenth_events_per_second"],
            **own,
        },
        "details": {
            "drain": drained,
            "usage": used,
            "reduced_from_1M": total < 1_000_000,
            "profile": profile,
            "database": names.database,
            "messages_tag": messages.tag,
            "store": target.label,
            "database_processes": sorted(servers),
        },
        "checks": [],
    }


def _servers_of(ctx: Context, target: Target) -> dict[str, int]:
    """The local stack's processes that serve ``target`` (none for a server elsewhere), and the broker."""
    stack = ctx.stack_pids
    wanted = ["kafka", "postgres" if target.store == "postgresql" else "ferretdb"]
    if target.store == "mongodb" and target.uri != ctx.mongo:
        wanted = ["kafka"]
    return {k: v for k, v in stack.items() if k in wanted}


def _database_cpu(used: dict[str, Any], servers: dict[str, int]) -> float | None:
    shares = [used[k]["cpu_percent"] for k in servers if k != "kafka" and k in used]
    if not shares or any(s is None for s in shares):
        return None
    return round(sum(shares), 1)


def _us(cpu_percent: float | None, per_second: float) -> float | None:
    if cpu_percent is None or not per_second:
        return None
    return round(cpu_percent / 100 / per_second * 1e6, 1)


def with_ceiling(
    ctx: Context,
    four: dict[str, Any],
    target: Target | None = None,
    *,
    phase: str = "drain",
    events: int | None = None,
    number: str = "4",
    server_pids: dict[str, int] | None = None,
    pg_database: str | None = None,
) -> dict[str, Any]:
    """Scenario 4's ceiling, with the API and the consumer stopped, into the drain's database. A phase of
    its own, so that a database restart by someone else repeats only this part."""
    target = target or ctx.ferretdb
    batch = ctx.settings(ctx.names(phase), target).consumer.max_batch_records
    count = events if events is not None else ctx.plan.drain_ceiling_events
    ctx.say(f"scenario {number} ceiling: raw insert_many of {count:,} documents, {batch} a batch")
    messages = Messages(four["details"]["messages_tag"])
    servers = server_pids if server_pids is not None else _servers_of(ctx, target)
    with watch(servers, database=pg_database) as usage:
        ceiling = asyncio.run(
            _ceiling(ctx, target, phase, four["details"]["database"], messages, batch, count)
        )
    ctx.say(f"scenario {number} ceiling: {ceiling['events_per_second']:,.0f} events/s")
    four = {**four, "figures": dict(four["figures"]), "details": {**four["details"], "ceiling": ceiling}}
    used = {k: vars(v) for k, v in usage.items()}
    four["figures"].update(
        {
            "database_cpu_percent_during_raw_insert": _database_cpu(used, servers),
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


def with_pg_ceiling(ctx: Context, nine: dict[str, Any]) -> dict[str, Any]:
    """Scenario 9's ceilings (bench/pg_ceiling.py), with the API and the consumer stopped, into the
    drain's database."""
    target = ctx.postgresql
    batch = ctx.settings(ctx.names("pgdrain"), target).consumer.max_batch_records
    count = ctx.plan.pg_ceiling_events
    ctx.say(
        f"scenario 9 ceiling: asyncpg inserts of {count:,} rows, {batch} a statement, six variants "
        "interleaved (bare unnest and bare json on one connection and on two, the service's statement with "
        "its counts on one and on two)"
    )
    messages = Messages(nine["details"]["messages_tag"])
    servers = _servers_of(ctx, target)
    database = nine["details"]["database"]
    with watch(servers, database=database) as usage:
        variants = asyncio.run(pg_ceiling(target.uri, database, count, batch, messages))
    bare = max(BARE_VARIANTS, key=lambda v: variants[v]["events_per_second"])
    best = variants[bare]
    service = variants["service_statement"]
    one = variants["bare_json_one_connection"]
    ctx.say(
        "scenario 9 ceiling: "
        + ", ".join(f"{v.replace('_', ' ')} {r['events_per_second']:,.0f}/s" for v, r in variants.items())
    )
    used = {k: vars(v) for k, v in usage.items()}
    nine = {**nine, "figures": dict(nine["figures"]), "details": {**nine["details"], "ceiling": variants}}
    drained = nine["figures"]["events_per_second"]
    counts_cost = (
        round(1 - service["events_per_second"] / one["events_per_second"], 3)
        if one["events_per_second"]
        else None
    )
    nine["figures"].update(
        {
            "database_cpu_percent_during_ceilings": _database_cpu(used, servers),
            "ceiling_events_per_second": best["events_per_second"],
            "ceiling_variant": bare.replace("_", " "),
            **{f"{v}_events_per_second": variants[v]["events_per_second"] for v in variants},
            **{f"{v}_statement_p50_ms": variants[v]["statement_p50_ms"] for v in variants},
            **{f"{v}_statement_p99_ms": variants[v]["statement_p99_ms"] for v in variants},
            **{f"{v}_server_cpu_us_per_event": variants[v]["server_cpu_us_per_event"] for v in variants},
            "ceiling_first_tenth_events_per_second": best["first_tenth_events_per_second"],
            "ceiling_last_tenth_events_per_second": best["last_tenth_events_per_second"],
            "counts_share_of_statement_throughput_lost": counts_cost,
        }
    )
    nine["checks"] = [
        check(
            "consumer drain into PostgreSQL vs the driver's bulk insert",
            drained,
            "events/s",
            ceiling=best["events_per_second"],
            ceiling_label=f"asyncpg, {bare.replace('_', ' ')}",
            target=("ratio>=", 0.8),
        ),
        check("consumer drain into PostgreSQL", drained, "events/s", target=(">=", 30_000)),
        check(
            "the service's statement (events + counts) vs the bare insert, one connection",
            service["events_per_second"],
            "events/s",
            ceiling=one["events_per_second"],
            ceiling_label="bare json insert, one connection",
        ),
        check(
            "bare insert: two connections vs one",
            variants["bare_json_two_connections"]["events_per_second"],
            "events/s",
            ceiling=one["events_per_second"],
            ceiling_label="bare json insert, one connection",
        ),
        check(
            "the service's statement, two connections vs the bare insert on two",
            variants["service_statement_two_connections"]["events_per_second"],
            "events/s",
            ceiling=variants["bare_json_two_connections"]["events_per_second"],
            ceiling_label="bare json insert, two connections",
        ),
        check(
            "consumer drain vs the service's statement alone, one connection",
            drained,
            "events/s",
            ceiling=service["events_per_second"],
            ceiling_label="the service's statement, one connection",
        ),
    ]
    return nine


async def _drain(
    ctx: Context, group: str, topic: str, total: int, consumer: Any, number: str = "4"
) -> dict[str, Any]:
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
                    f"scenario {number}: drain budget exhausted at {done:,}/{total:,}; "
                    "measuring what was drained"
                )
                break
            if now - report >= 15:
                report = now
                ctx.say(f"scenario {number}: {done:,}/{total:,} stored and committed")
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


async def _ceiling(
    ctx: Context, target: Target, phase: str, database: str, messages: Messages, batch: int, count: int
) -> dict[str, float]:
    settings = target.apply(ctx.settings(ctx.names(phase), target), database)
    async with mongo_database(settings) as db:
        await db.drop_collection(CEILING_COLLECTION)  # a repeat after a database restart starts over
        return await raw_insert_rate(db[CEILING_COLLECTION], count, batch, messages.documents)


def _rate_between(polls: list[tuple[float, int]], low: int, high: int) -> float:
    """Events/s while the committed count went from ``low`` to ``high`` (from the polls around them)."""
    before = [p for p in polls if p[1] <= low]
    after = [p for p in polls if p[1] >= high]
    if not before or not after or after[0][0] <= before[-1][0]:
        return 0.0
    start, end = before[-1], after[0]
    return round((end[1] - start[1]) / (end[0] - start[0]), 1)
