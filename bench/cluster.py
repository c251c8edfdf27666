"""Scenario 14: ingest (single and batch POST) against a three-broker cluster, the topic with replication
factor 3 and min.insync.replicas=2, next to scenarios 2 and 3 on the single broker, in the same run and
with the same load. A 202 then waits for two brokers to have the events, not one.

The cluster is the one `make cluster-up` starts (on ports of its own); BENCH_CLUSTER_KAFKA names it
(`make bench` sets it). When it is not set or no three brokers answer there, the scenario is skipped,
saying so: the rest of the run does not need it.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from bench.broker import delete_topics
from bench.checks import check
from bench.context import Context
from bench.drive import load, warm_up

KEY = "14_cluster_ingest"
TITLE = "Ingest on a three-broker cluster (RF 3, min ISR 2) next to one broker"


async def _brokers(bootstrap: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5_000)
    try:
        await admin.start()
        return len((await admin.describe_cluster())["brokers"])
    finally:
        await admin.close()


async def _replication(bootstrap: str, topic: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5_000)
    await admin.start()
    try:
        (description,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    replicas = sorted({len(p["replicas"]) for p in description["partitions"]})
    return "/".join(map(str, replicas))


def unavailable(bootstrap: str) -> str | None:
    """Why the scenario cannot run, or None."""
    if not bootstrap:
        return (
            "skipped: BENCH_CLUSTER_KAFKA is not set (make bench sets it; make cluster-up starts the cluster)"
        )
    try:
        brokers = asyncio.run(_brokers(bootstrap))
    except Exception as exc:
        return (
            f"skipped: no Kafka cluster answers at {bootstrap} ({type(exc).__name__}); "
            "make cluster-up starts one"
        )
    if brokers < 3:
        return f"skipped: {bootstrap} has {brokers} broker(s), not three"
    return None


def run(ctx: Context, pair: tuple[dict[str, Any], dict[str, Any]] | None) -> dict[str, Any]:
    bootstrap = os.environ.get("BENCH_CLUSTER_KAFKA", "")
    reason = unavailable(bootstrap)
    if reason is not None:
        ctx.say(f"scenario 14: {reason}")
        return {"title": TITLE, "status": "skipped", "reason": reason}
    plan = ctx.plan
    names = ctx.names("cluster")
    env = ctx.env(
        names, KAFKA_BOOTSTRAP_SERVERS=bootstrap, KAFKA_REPLICATION_FACTOR="3", KAFKA_MIN_INSYNC_REPLICAS="2"
    )
    ctx.say(f"scenario 14: starting the API on the cluster at {bootstrap} (consumer stopped)")
    api = ctx.procs.start_api("api-cluster", env)
    try:
        replicas = asyncio.run(_replication(bootstrap, names.topic))
        c, b = plan.single_connections, plan.batch_connections
        warm_up(ctx, api, "single", c)
        single, single_usage = load(ctx, api, "single", c, plan.single_seconds, warmup=False)
        ctx.say(
            f"scenario 14: single POST {single.requests_per_second:,.0f} events/s, "
            f"p99 {single.latency_ms['p99']} ms"
        )
        warm_up(ctx, api, "batch", b)
        batch, batch_usage = load(ctx, api, "batch", b, plan.batch_seconds, warmup=False)
        batch_eps = round(batch.requests_per_second * plan.batch_size, 1)
        ctx.say(f"scenario 14: batch POST {batch_eps:,.0f} events/s, p99 {batch.latency_ms['p99']} ms")
    finally:
        ctx.procs.stop(api)
        try:
            asyncio.run(delete_topics(bootstrap, names.topic))
        except Exception as exc:  # the figures matter more than the clean-up
            ctx.say(f"scenario 14: could not delete {names.topic} on the cluster ({exc})")
    one_single = pair[0]["figures"] if pair else {}
    one_batch = pair[1]["figures"] if pair else {}
    return {
        "title": TITLE,
        "status": "measured",
        "conditions": f"API alone (consumer stopped), topic with {replicas} replicas and "
        "min.insync.replicas=2 on a three-node KRaft cluster on this machine (its brokers' CPU is not in "
        "the figures); same wrk load as scenarios 2 and 3",
        "figures": {
            "replicas": replicas,
            "single_events_per_second": single.requests_per_second,
            "single_latency_p50_ms": single.latency_ms["p50"],
            "single_latency_p99_ms": single.latency_ms["p99"],
            "single_errors": single.failed,
            "single_requests_answered_503": single.answered(503),
            "batch_events_per_second": batch_eps,
            "batch_latency_p50_ms": batch.latency_ms["p50"],
            "batch_latency_p99_ms": batch.latency_ms["p99"],
            "batch_errors": batch.failed,
            "batch_requests_answered_503": batch.answered(503),
            "api_cpu_percent_single": single_usage["server"]["cpu_percent"],
            "api_cpu_percent_batch": batch_usage["server"]["cpu_percent"],
            "one_broker_single_events_per_second": one_single.get("events_per_second"),
            "one_broker_single_latency_p99_ms": one_single.get("latency_p99_ms"),
            "one_broker_batch_events_per_second": one_batch.get("events_per_second"),
            "one_broker_batch_latency_p99_ms": one_batch.get("latency_p99_ms"),
        },
        "details": {"single": single.as_dict(), "batch": batch.as_dict()},
        "checks": [
            check(
                "single POST on the cluster vs one broker",
                single.requests_per_second,
                "events/s",
                ceiling=one_single.get("events_per_second"),
                ceiling_label="one broker (2)",
            ),
            check(
                "single POST latency p99 on the cluster",
                single.latency_ms["p99"],
                "ms",
                ceiling=one_single.get("latency_p99_ms"),
                ceiling_label="one broker (2)",
            ),
            check(
                "batch POST on the cluster vs one broker",
                batch_eps,
                "events/s",
                ceiling=one_batch.get("events_per_second"),
                ceiling_label="one broker (3)",
            ),
            check(
                "batch POST latency p99 on the cluster",
                batch.latency_ms["p99"],
                "ms",
                ceiling=one_batch.get("latency_p99_ms"),
                ceiling_label="one broker (3)",
            ),
        ],
    }
