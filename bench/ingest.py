"""Scenarios 1-3: ingest over HTTP with the consumer stopped (API + broker only on the two cores).

1. HTTP ceiling: the ceiling server (the real app with publishing replaced by nothing) under wrk, plus
   wrk against GET /health to show the generator's headroom.
2. Single-event POST with the broker's acknowledgment, at fixed concurrency. For diagnosis, also the raw
   producer sending one event at a time from as many concurrent senders as wrk has connections.
3. Batch POST (``batch_size`` events a request), and its ceiling: the raw producer, with the API idle.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.broker import raw_producer_rate
from bench.checks import check
from bench.context import Context
from bench.data import Messages
from bench.drive import API_PATH, load, profile, published, us_per_event, warm_up


def _bare(ctx: Context, kind: str, label: str) -> dict[str, Any]:
    """One bare ceiling (bench/bare_server.py) under the single POST load (and the batch load for
    ``validate``): its rate, latency and CPU per request."""
    plan = ctx.plan
    c, b = plan.single_connections, plan.batch_connections
    ctx.say(f"scenario 1{label}: starting the bare {kind} server")
    server = ctx.procs.start_api(f"ceiling-{kind}", ctx.env(ctx.names(f"ceiling{kind}")), kind=kind)
    out: dict[str, Any] = {}
    try:
        run, usage = load(ctx, server, "single", c, plan.ceiling_seconds)
        out["single"] = _figures(run, usage)
        ctx.say(f"scenario 1{label}: {run.requests_per_second:,.0f} req/s, p99 {run.latency_ms['p99']} ms")
        if kind == "validate":
            out["profile"] = profile(ctx, server, "single", c, "ceiling-validate-single")
            batch, batch_usage = load(ctx, server, "batch", b, plan.ceiling_seconds)
            out["batch"] = _figures(batch, batch_usage, plan.batch_size)
            ctx.say(f"scenario 1{label}: batch {out['batch']['events_per_second']:,.0f} events/s")
    finally:
        ctx.procs.stop(server)
    return out


def _figures(run: Any, usage: dict[str, Any], events_per_request: int = 1) -> dict[str, Any]:
    eps = round(run.requests_per_second * events_per_request, 1)
    return {
        "requests_per_second": run.requests_per_second,
        "events_per_second": eps,
        "latency_p50_ms": run.latency_ms["p50"],
        "latency_p99_ms": run.latency_ms["p99"],
        "server_cpu_percent": usage["server"]["cpu_percent"],
        "server_cpu_us_per_request": us_per_event(usage["server"]["cpu_percent"], run.requests_per_second),
        "server_cpu_us_per_event": us_per_event(usage["server"]["cpu_percent"], eps),
        "wrk_cpu_percent": run.cpu_percent,
        "errors": run.failed,
        "answered_202": run.answered(202),
    }


def http_ceiling(ctx: Context) -> dict[str, Any]:
    plan = ctx.plan
    validate = _bare(ctx, "validate", "a")
    asgi = _bare(ctx, "asgi", "b")
    ctx.say("scenario 1: starting the service with publishing replaced by nothing")
    server = ctx.procs.start_api("ceiling-api", ctx.env(ctx.names("ceiling")), kind="noop")
    try:
        ctx.say(
            f"scenario 1: wrk POST {API_PATH}, {plan.single_connections} connections, {plan.ceiling_seconds}s"
        )
        run, usage = load(ctx, server, "single", plan.single_connections, plan.ceiling_seconds)
        ctx.say(f"scenario 1: {run.requests_per_second:,.0f} req/s, p99 {run.latency_ms['p99']} ms")
        ceiling_profile = profile(ctx, server, "single", plan.single_connections, "ceiling-single")
        ctx.say(f"generator check: wrk GET /health, {plan.single_connections} connections")
        health, health_usage = load(ctx, server, "get", plan.single_connections, plan.generator_seconds)
    finally:
        ctx.procs.stop(server)
    # What wrk could drive if it had a core to itself: its requests per second of its own CPU time.
    capacity = round(run.requests / run.cpu_seconds, 1) if run.cpu_seconds else 0.0
    a, b_ = validate["single"], asgi["single"]
    return {
        "title": "HTTP ceilings: (a) bare validate-only FastAPI, (b) raw ASGI, and the service without Kafka",
        "status": "measured",
        "conditions": "each server alone (no consumer), one after the other; wrk closed loop, same load",
        "figures": {
            "validate_requests_per_second": a["requests_per_second"],
            "validate_latency_p99_ms": a["latency_p99_ms"],
            "validate_cpu_us_per_request": a["server_cpu_us_per_request"],
            "validate_batch_events_per_second": validate["batch"]["events_per_second"],
            "validate_batch_cpu_us_per_event": validate["batch"]["server_cpu_us_per_event"],
            "asgi_requests_per_second": b_["requests_per_second"],
            "asgi_latency_p99_ms": b_["latency_p99_ms"],
            "asgi_cpu_us_per_request": b_["server_cpu_us_per_request"],
            "requests_per_second": run.requests_per_second,
            "latency_p50_ms": run.latency_ms["p50"],
            "latency_p99_ms": run.latency_ms["p99"],
            "server_cpu_percent": usage["server"]["cpu_percent"],
            "server_cpu_us_per_request": us_per_event(
                usage["server"]["cpu_percent"], run.requests_per_second
            ),
            "wrk_cpu_percent": run.cpu_percent,
            "wrk_requests_per_cpu_second": capacity,
            "health_requests_per_second": health.requests_per_second,
            "health_wrk_cpu_percent": health.cpu_percent,
            "errors": run.failed + a["errors"] + b_["errors"],
        },
        "details": {
            "validate": validate,
            "asgi": asgi,
            "wrk": run.as_dict(),
            "usage": usage,
            "health": health.as_dict(),
            "health_usage": health_usage,
            "profile": ceiling_profile,
        },
        "checks": [
            check("(a) bare validate-only FastAPI, single POST", a["requests_per_second"], "req/s"),
            check("(b) raw ASGI, 202 without parsing", b_["requests_per_second"], "req/s"),
            check(
                "service without Kafka (publishing to nothing) vs (a)",
                run.requests_per_second,
                "req/s",
                ceiling=a["requests_per_second"],
                ceiling_label="(a) validate-only",
            ),
            check(
                "generator capacity (wrk req per wrk CPU-second) vs (b)",
                round(b_["requests_per_second"] / (b_["wrk_cpu_percent"] / 100), 1)
                if b_["wrk_cpu_percent"]
                else capacity,
                "req/s",
                ceiling=b_["requests_per_second"],
                ceiling_label="(b) raw ASGI",
                target=("ratio>=", 1.2),
            ),
            check(
                "generator check: wrk GET /health vs service without Kafka",
                health.requests_per_second,
                "req/s",
                ceiling=run.requests_per_second,
                ceiling_label="service without Kafka",
            ),
        ],
    }


def single_and_batch(ctx: Context, ceiling: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    plan = ctx.plan
    names = ctx.names("ingest")
    settings = ctx.settings(names)
    messages = Messages(f"r{ctx.run_id}")
    ctx.say("scenario 2: starting the API (consumer stopped)")
    api = ctx.procs.start_api("api-ingest", ctx.env(names))
    try:
        c = plan.single_connections
        warm_up(ctx, api, "single", c)
        ctx.say(f"scenario 2: wrk POST {API_PATH}, {c} connections, {plan.single_seconds}s")
        (single, single_usage), added = published(
            ctx, names.topic, lambda: load(ctx, api, "single", c, plan.single_seconds, warmup=False)
        )
        ctx.say(
            f"scenario 2: {single.requests_per_second:,.0f} events/s, p50 {single.latency_ms['p50']} ms, "
            f"p99 {single.latency_ms['p99']} ms, API CPU {single_usage['server']['cpu_percent']}%"
        )
        single_profile = profile(ctx, api, "single", c, "api-single")
        ctx.say(f"scenario 2 reference: raw producer, {c} senders x 1 event each, API idle")
        raw_single = asyncio.run(
            raw_producer_rate(settings, plan.raw_producer_seconds, c, 1, messages.message)
        )
        ctx.say(f"scenario 2 reference: {raw_single['events_per_second']:,.0f} events/s")

        b = plan.batch_connections
        ctx.say(
            f"scenario 3: wrk POST {API_PATH}/batch ({plan.batch_size} events), {b} connections, "
            f"{plan.batch_seconds}s"
        )
        warm_up(ctx, api, "batch", b)
        (batch, batch_usage), batch_added = published(
            ctx, names.topic, lambda: load(ctx, api, "batch", b, plan.batch_seconds, warmup=False)
        )
        batch_eps = round(batch.requests_per_second * plan.batch_size, 1)
        ctx.say(f"scenario 3: {batch_eps:,.0f} events/s, API CPU {batch_usage['server']['cpu_percent']}%")
        batch_profile = profile(ctx, api, "batch", b, "api-batch")
        ctx.say(f"scenario 3 ceiling: raw producer, {b} senders x {plan.batch_size} events, API idle")
        raw = asyncio.run(
            raw_producer_rate(settings, plan.raw_producer_seconds, b, plan.batch_size, messages.message)
        )
        ctx.say(f"scenario 3 ceiling: {raw['events_per_second']:,.0f} events/s")
    finally:
        ctx.procs.stop(api)
    cf = ceiling["figures"] if ceiling else {}
    single_cpu_us = us_per_event(single_usage["server"]["cpu_percent"], single.requests_per_second)
    ceiling_rps = cf.get("requests_per_second")
    two = {
        "title": "Single-event POST, 202 after the broker's acknowledgment",
        "status": "measured",
        "conditions": "API alone (consumer stopped); wrk closed loop",
        "figures": {
            "events_per_second": single.requests_per_second,
            "latency_p50_ms": single.latency_ms["p50"],
            "latency_p99_ms": single.latency_ms["p99"],
            "api_cpu_percent": single_usage["server"]["cpu_percent"],
            "api_peak_rss_mb": single_usage["server"]["peak_rss_mb"],
            "broker_cpu_percent": single_usage.get("kafka", {}).get("cpu_percent"),
            "wrk_cpu_percent": single.cpu_percent,
            "errors": single.failed,
            "requests_answered_202": single.answered(202),
            "requests_answered_503": single.answered(503),
            "records_added_to_topic": added,
            "raw_producer_single_sends_events_per_second": raw_single["events_per_second"],
            "raw_producer_single_send_p50_ms": raw_single["batch_round_trip_p50_ms"],
            "raw_producer_single_send_p99_ms": raw_single["batch_round_trip_p99_ms"],
            "raw_producer_single_send_cpu_us_per_event": raw_single["cpu_us_per_event"],
            "api_cpu_us_per_event": single_cpu_us,
        },
        "details": {
            "wrk": single.as_dict(),
            "usage": single_usage,
            "raw_single_sends": raw_single,
            "profile": single_profile,
        },
        "checks": [
            check(
                "single POST vs (a) bare validate-only FastAPI",
                single.requests_per_second,
                "events/s",
                ceiling=cf.get("validate_requests_per_second"),
                ceiling_label="(a) validate-only",
                target=("ratio>=", 0.75),
            ),
            check(
                "single POST vs (b) raw ASGI",
                single.requests_per_second,
                "events/s",
                ceiling=cf.get("asgi_requests_per_second"),
                ceiling_label="(b) raw ASGI",
            ),
            check(
                "single POST vs the service without Kafka",
                single.requests_per_second,
                "events/s",
                ceiling=ceiling_rps,
                ceiling_label="service, publishing to nothing",
            ),
            check(
                "single POST throughput, one API worker",
                single.requests_per_second,
                "events/s",
                target=(">=", 5_000),
            ),
            check(
                f"single POST latency p99 at {c} connections",
                single.latency_ms["p99"],
                "ms",
                ceiling=cf.get("validate_latency_p99_ms"),
                ceiling_label="(a) p99",
                target=("<=", 25),
            ),
            check(
                "single POST API CPU per event vs (a)'s per request",
                single_cpu_us,
                "µs",
                ceiling=cf.get("validate_cpu_us_per_request"),
                ceiling_label="(a) µs/request",
            ),
            check(
                "single POST vs raw producer sending one event at a time",
                single.requests_per_second,
                "events/s",
                ceiling=raw_single["events_per_second"],
                ceiling_label=f"raw producer, {c} senders",
            ),
            check(
                "records added to the topic vs 202 answers",
                added,
                "records",
                ceiling=single.answered(202),
                ceiling_label="202 answers",
                target=("ratio>=", 1.0),
            ),
        ],
    }
    three = {
        "title": f"Batch POST ({plan.batch_size} events a request)",
        "status": "measured",
        "conditions": "API alone (consumer stopped); the raw producer ceiling with the API idle",
        "figures": {
            "events_per_second": batch_eps,
            "requests_per_second": batch.requests_per_second,
            "latency_p50_ms": batch.latency_ms["p50"],
            "latency_p99_ms": batch.latency_ms["p99"],
            "api_cpu_percent": batch_usage["server"]["cpu_percent"],
            "api_peak_rss_mb": batch_usage["server"]["peak_rss_mb"],
            "broker_cpu_percent": batch_usage.get("kafka", {}).get("cpu_percent"),
            "errors": batch.failed,
            "events_answered_202": batch.answered(202) * plan.batch_size,
            "requests_answered_503": batch.answered(503),
            "records_added_to_topic": batch_added,
            "raw_producer_events_per_second": raw["events_per_second"],
            "raw_producer_batch_p50_ms": raw["batch_round_trip_p50_ms"],
            "raw_producer_batch_p99_ms": raw["batch_round_trip_p99_ms"],
            "raw_producer_cpu_percent": raw["cpu_percent"],
            "raw_producer_cpu_us_per_event": raw["cpu_us_per_event"],
            "api_cpu_us_per_event": us_per_event(batch_usage["server"]["cpu_percent"], batch_eps),
        },
        "details": {
            "wrk": batch.as_dict(),
            "usage": batch_usage,
            "raw_producer": raw,
            "profile": batch_profile,
        },
        "checks": [
            check(
                "batch POST throughput vs raw producer",
                batch_eps,
                "events/s",
                ceiling=raw["events_per_second"],
                ceiling_label="(c) raw aiokafka producer",
                target=("ratio>=", 0.8),
            ),
            check("batch POST throughput, one API worker", batch_eps, "events/s", target=(">=", 80_000)),
            check(
                "batch POST vs (a) bare validate-only FastAPI, batch",
                batch_eps,
                "events/s",
                ceiling=cf.get("validate_batch_events_per_second"),
                ceiling_label="(a) validate-only batch",
            ),
            check(
                "records added to the topic vs events answered 202",
                batch_added,
                "records",
                ceiling=batch.answered(202) * plan.batch_size,
                ceiling_label="accepted events",
                target=("ratio>=", 1.0),
            ),
        ],
    }
    return two, three
