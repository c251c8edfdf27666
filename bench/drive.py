"""Driving a service process with wrk: warm-up, the measured run with CPU and memory watched, and the
extra unmeasured run that py-spy profiles."""

from __future__ import annotations

import asyncio
from typing import Any

from bench import wrk
from bench.broker import end_offsets
from bench.context import Context
from bench.procs import Service, watch

API_PATH = "/api/activities"


def url_of(service: Service, mode: str) -> str:
    return service.base_url + {"get": "/health", "batch": API_PATH + "/batch"}.get(mode, API_PATH)


def _options(ctx: Context, mode: str, connections: int) -> dict[str, Any]:
    return {
        "mode": mode,
        "connections": connections,
        "threads": ctx.plan.wrk_threads,
        "users": ctx.plan.users,
        "timestamp": ctx.timestamp,
        "batch_size": ctx.plan.batch_size,
    }


def warm_up(ctx: Context, service: Service, mode: str, connections: int) -> None:
    wrk.run(
        ctx.wrk, url_of(service, mode), seconds=ctx.plan.warmup_seconds, **_options(ctx, mode, connections)
    )


def load(
    ctx: Context, service: Service, mode: str, connections: int, seconds: float, warmup: bool = True
) -> tuple[wrk.WrkRun, dict[str, Any]]:
    """The measured wrk run (after a warm-up), with the server's and the stack's CPU and memory watched."""
    if warmup:
        warm_up(ctx, service, mode, connections)
    with watch({"server": service.pid, **ctx.stack_pids}) as usage:
        result = wrk.run(ctx.wrk, url_of(service, mode), seconds=seconds, **_options(ctx, mode, connections))
    return result, {name: vars(u) for name, u in usage.items()}


def published(ctx: Context, topic: str, measured: Any) -> tuple[Any, int]:
    """Run ``measured`` and count the records it added to the topic (every 202 must be among them)."""
    before = asyncio.run(end_offsets(ctx.kafka, topic))
    result = measured()
    return result, asyncio.run(end_offsets(ctx.kafka, topic)) - before


def profile(ctx: Context, service: Service, mode: str, connections: int, name: str) -> dict[str, Any] | None:
    """An extra, unmeasured run of the same load while py-spy samples the server."""
    sampler = ctx.sampler(service.pid, name, ctx.plan.profile_seconds)
    if sampler is None:
        return None
    ctx.say(
        f"profile: py-spy on {service.name} under the same load, {ctx.plan.profile_seconds}s (not measured)"
    )
    load(ctx, service, mode, connections, ctx.plan.profile_seconds + 1, warmup=False)
    return sampler.finish()


def us_per_event(cpu_percent: float | None, per_second: float) -> float | None:
    """CPU microseconds a process spent per event (or request), from its CPU share and its rate."""
    if cpu_percent is None or not per_second:
        return None
    return round(cpu_percent / 100 / per_second * 1e6, 1)
