"""Scenario 12: the live tail, 200 open streams (GET /api/activities/stream) while ingesting at half of
scenario 2's single-POST rate, the API alone (consumer stopped: the tail reads Kafka, not the database).

The streams come from another process (bench/sse_client.py), so its CPU is not the API's (it is reported:
on two cores everything shares them). Probe events with known ids are posted among wrk's paced load; the
delivery lag is the time from a probe's 202 to its arrival on each stream, over every (probe, stream)
pair. Each stream follows everything (no filter): the most the API has to send.

Runs, on one API process: paced half load without streams, then the closed-loop single POST of scenario 2
without streams (the ingest capacity), then the streams open: the same paced load (lag, CPU, memory), and
the same closed loop again (what the open streams cost the ingest).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from typing import Any

import httpx

from bench import wrk
from bench.checks import check
from bench.context import Context
from bench.drive import API_PATH, us_per_event
from bench.errors import BenchError
from bench.procs import API_KEY, AUTH_HEADERS, ROOT, Service, watch
from bench.stats import ms, percentile


def run(ctx: Context, single_eps: float | None) -> dict[str, Any]:
    plan = ctx.plan
    if not single_eps:
        raise BenchError(
            "scenario 12 needs scenario 2's events/s (half of it is the load); scenario 2 failed"
        )
    names = ctx.names("tail")
    target_rate = single_eps / 2
    probe_rate = min(plan.tail_probes_per_second, target_rate / 4)
    background = target_rate - probe_rate
    ctx.say("scenario 12: starting the API (consumer stopped)")
    api = ctx.procs.start_api("api-tail", ctx.env(names))
    client: subprocess.Popen[str] | None = None
    out = ctx.procs.logs / "sse-client.json"
    try:
        _closed(ctx, api, plan.warmup_seconds)
        ctx.say(f"scenario 12: without streams: {target_rate:,.0f} events/s paced for {plan.tail_seconds}s")
        alone, _ = _paced(ctx, api, background, probe_rate, "alone")
        ctx.say(f"scenario 12: without streams: closed loop, {plan.tail_closed_seconds}s")
        closed_alone, closed_alone_usage = _closed(
            ctx, api, plan.tail_closed_seconds, watched={"api": api.pid}
        )
        ctx.say(f"scenario 12: opening {plan.tail_streams} streams from a separate client process")
        client = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.sse_client",
                "--url",
                api.base_url + API_PATH + "/stream",
                "--key",
                API_KEY,
                "--streams",
                str(plan.tail_streams),
                "--marker",
                f"probe-tail-{ctx.run_id}-",
                "--out",
                str(out),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=(ctx.procs.logs / "sse-client.log").open("w"),
            text=True,
        )
        assert client.stdout is not None
        line = client.stdout.readline().strip()
        if not line.startswith("READY") or int(line.split()[1]) != plan.tail_streams:
            raise BenchError(f"the stream client did not open {plan.tail_streams} streams: {line!r}")
        ctx.say(f"scenario 12: with {plan.tail_streams} streams: the same paced load")
        streamed, probes = _paced(ctx, api, background, probe_rate, "streamed", client_pid=client.pid)
        ctx.say(f"scenario 12: with {plan.tail_streams} streams: closed loop, {plan.tail_closed_seconds}s")
        closed_streamed, closed_streamed_usage = _closed(
            ctx, api, plan.tail_closed_seconds, watched={"api": api.pid, "client": client.pid}
        )
        time.sleep(2)  # the last probes' way to every stream
        client.terminate()
        client.wait(timeout=60)
        client = None
        delivered = json.loads(out.read_text())
    finally:
        if client is not None:
            client.kill()
        ctx.procs.stop(api)
    return _scenario(
        ctx,
        target_rate,
        alone,
        streamed,
        probes,
        delivered,
        (closed_alone, closed_alone_usage),
        (closed_streamed, closed_streamed_usage),
    )


def _closed(
    ctx: Context, api: Service, seconds: float, watched: dict[str, int] | None = None
) -> tuple[wrk.WrkRun, dict[str, Any]]:
    common = {
        "mode": "single",
        "threads": ctx.plan.wrk_threads,
        "users": ctx.plan.users,
        "timestamp": ctx.timestamp,
    }
    with watch(watched or {}) as usage:
        result = wrk.run(
            ctx.wrk,
            api.base_url + API_PATH,
            connections=ctx.plan.single_connections,
            seconds=seconds,
            **common,
        )
    return result, {k: vars(v) for k, v in usage.items()}


def _paced(
    ctx: Context,
    api: Service,
    background: float,
    probe_rate: float,
    label: str,
    client_pid: int | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    pids = {"api": api.pid, **({"client": client_pid} if client_pid else {}), **ctx.stack_pids}
    with watch(pids) as usage:
        probes, load = asyncio.run(_probe(ctx, api, background, probe_rate, label))
    accepted = [p for p in probes if p.get("accepted")]
    achieved = load.requests_per_second + len(accepted) / ctx.plan.tail_seconds
    return (
        {
            "achieved_events_per_second": round(achieved, 1),
            "background": load.as_dict(),
            "usage": {k: vars(v) for k, v in usage.items()},
            "probes_accepted": len(accepted),
            "probe_post_p50_ms": ms(percentile([p["accepted"] - p["sent"] for p in accepted], 50)),
        },
        accepted,
    )


async def _probe(
    ctx: Context, api: Service, background: float, probe_rate: float, label: str
) -> tuple[list[dict[str, Any]], wrk.WrkRun]:
    plan = ctx.plan
    loop = asyncio.get_running_loop()
    load = loop.run_in_executor(
        None,
        lambda: wrk.run(
            ctx.wrk,
            api.base_url + API_PATH,
            mode="single",
            connections=plan.single_connections,
            threads=plan.wrk_threads,
            seconds=plan.tail_seconds,
            users=plan.users,
            timestamp=ctx.timestamp,
            rate_per_second=background,
        ),
    )
    probes: list[dict[str, Any]] = []

    async def post(client: httpx.AsyncClient, n: int) -> None:
        probe: dict[str, Any] = {"id": f"probe-tail-{ctx.run_id}-{label}-{n:06d}", "sent": time.monotonic()}
        probes.append(probe)
        body = {
            "userId": f"bench-probe-{n % 50}",
            "action": "probe",
            "id": probe["id"],
            "timestamp": ctx.timestamp,
        }
        response = await client.post(API_PATH, json=body)
        if response.status_code == 202:
            probe["accepted"] = time.monotonic()

    async with httpx.AsyncClient(base_url=api.base_url, headers=AUTH_HEADERS, timeout=30) as client:
        posts = []
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < plan.tail_seconds:
            posts.append(asyncio.create_task(post(client, n)))
            n += 1
            await asyncio.sleep(max(0.0, started + n / probe_rate - time.monotonic()))
        await asyncio.gather(*posts)
    return probes, await load


def _scenario(
    ctx: Context,
    target_rate: float,
    alone: dict[str, Any],
    streamed: dict[str, Any],
    probes: list[dict[str, Any]],
    delivered: dict[str, Any],
    closed_alone: tuple[wrk.WrkRun, dict[str, Any]],
    closed_streamed: tuple[wrk.WrkRun, dict[str, Any]],
) -> dict[str, Any]:
    lags: list[float] = []
    missing = 0
    for probe in probes:
        for stream in delivered["received"]:
            at = stream.get(probe["id"])
            if at is None:
                missing += 1
            else:
                lags.append(at - probe["accepted"])
    last_stream = [
        max(s[p["id"]] for s in delivered["received"]) - p["accepted"]
        for p in probes
        if all(p["id"] in s for s in delivered["received"])
    ]
    api_alone, api_streamed = alone["usage"]["api"], streamed["usage"]["api"]
    client = streamed["usage"].get("client", {})
    (run_alone, use_alone), (run_streamed, use_streamed) = closed_alone, closed_streamed
    per_stream = delivered["events_per_stream"]
    figures = {
        "streams": delivered["streams"],
        "target_events_per_second": round(target_rate, 1),
        "achieved_events_per_second_without_streams": alone["achieved_events_per_second"],
        "achieved_events_per_second_with_streams": streamed["achieved_events_per_second"],
        "delivery_lag_p50_ms": ms(percentile(lags, 50)),
        "delivery_lag_p99_ms": ms(percentile(lags, 99)),
        "delivery_lag_max_ms": ms(max(lags, default=0.0)),
        "lag_to_the_last_stream_p99_ms": ms(percentile(last_stream, 99)),
        "probe_deliveries_measured": len(lags),
        "probe_deliveries_missing": missing,
        "overflows": delivered["overflows"],
        "streams_closed_by_server": delivered["closed_by_server"],
        "events_received_per_stream_min": min(per_stream, default=0),
        "events_received_per_stream_max": max(per_stream, default=0),
        "bytes_received_mb": round(delivered["bytes"] / 1_048_576, 1),
        "api_cpu_percent_without_streams": api_alone["cpu_percent"],
        "api_cpu_percent_with_streams": api_streamed["cpu_percent"],
        "api_cpu_us_per_event_without_streams": us_per_event(
            api_alone["cpu_percent"], alone["achieved_events_per_second"]
        ),
        "api_cpu_us_per_event_with_streams": us_per_event(
            api_streamed["cpu_percent"], streamed["achieved_events_per_second"]
        ),
        "api_peak_rss_mb_without_streams": api_alone["peak_rss_mb"],
        "api_peak_rss_mb_with_streams": max(
            api_streamed["peak_rss_mb"] or 0, use_streamed.get("api", {}).get("peak_rss_mb") or 0
        ),
        "client_cpu_percent": client.get("cpu_percent"),
        "client_cpu_percent_closed_loop": use_streamed.get("client", {}).get("cpu_percent"),
        "broker_cpu_percent_with_streams": streamed["usage"].get("kafka", {}).get("cpu_percent"),
        "closed_loop_events_per_second_without_streams": run_alone.requests_per_second,
        "closed_loop_events_per_second_with_streams": run_streamed.requests_per_second,
        "closed_loop_p99_ms_without_streams": run_alone.latency_ms["p99"],
        "closed_loop_p99_ms_with_streams": run_streamed.latency_ms["p99"],
        "closed_loop_api_cpu_percent_with_streams": use_streamed.get("api", {}).get("cpu_percent"),
        "closed_loop_503_with_streams": run_streamed.answered(503),
    }
    rss = figures["api_peak_rss_mb_with_streams"]
    return {
        "title": f"Live tail: {delivered['streams']} open streams while ingesting at half of scenario 2",
        "status": "measured",
        "conditions": "API alone (consumer stopped); every stream unfiltered (each gets every event); "
        "streams from a separate client process on the same two cores; wrk paced plus probe events",
        "figures": figures,
        "details": {
            "alone": alone,
            "streamed": streamed,
            "closed_alone": {"wrk": run_alone.as_dict(), "usage": use_alone},
            "closed_streamed": {"wrk": run_streamed.as_dict(), "usage": use_streamed},
            "refused": delivered["refused"],
        },
        "checks": [
            check(
                f"delivery lag p99, 202 -> on each of {delivered['streams']} streams",
                figures["delivery_lag_p99_ms"] / 1000,
                "s",
                target=("<=", 1.0),
            ),
            check("probe deliveries missing (probe x stream)", missing, "deliveries", target=("<=", 0)),
            check("API peak RSS with the streams open", rss, "MB", target=("<=", 150)),
            check(
                "API CPU per event at half load, streams vs none",
                figures["api_cpu_us_per_event_with_streams"] or 0.0,
                "µs",
                ceiling=figures["api_cpu_us_per_event_without_streams"],
                ceiling_label="no streams",
            ),
            check(
                "single POST closed loop with the streams open vs without",
                run_streamed.requests_per_second,
                "events/s",
                ceiling=run_alone.requests_per_second,
                ceiling_label="no streams",
            ),
            check("stream client CPU (of one core)", client.get("cpu_percent") or 0.0, "%"),
        ],
    }
