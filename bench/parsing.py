"""Micro-benchmark of one ingest request in-process: `python -m bench.parsing [--rounds N]`.

Drives the real app (create_app: every middleware, auth, the body parsing, the schema and the domain
checks, the answer) straight through its ASGI callable, with a publisher that publishes nothing and no
rate limit, so what is measured is the CPU a request costs the API before Kafka: no sockets, no server,
no event-loop scheduling beyond the request's own awaits. Bodies are those the bench's wrk script sends
(bench/lua/load.lua): one activity, and a batch of 100. Prints the best of several rounds, in µs per
request (best, not mean: on a shared machine the minimum is the least noisy estimate of the cost).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

from activity_service.application.record_activity import RecordActivity
from activity_service.application.record_batch import RecordBatch
from activity_service.bootstrap import ApiServices
from activity_service.infrastructure.settings import AuthSettings, Settings
from activity_service.infrastructure.system import SystemClock, Uuid7Ids
from activity_service.interfaces.http.app import create_app
from bench.ceiling_server import NoPublisher

KEY = "bench-parsing-key-0123456789"
TIMESTAMP = "2026-11-26T10:00:00.000Z"
ACTIONS = ("page_view", "click", "login", "purchase", "logout")


def activity(user: int, n: int) -> dict[str, Any]:
    return {
        "userId": f"bench-user-{user}",
        "action": ACTIONS[n % 5],
        "timestamp": TIMESTAMP,
        "metadata": {"path": "/pricing", "referrer": "newsletter", "n": n},
    }


def bodies() -> dict[str, tuple[str, bytes]]:
    single = json.dumps(activity(1, 1), separators=(",", ":")).encode()
    batch = json.dumps({"activities": [activity(i % 50, i) for i in range(100)]}, separators=(",", ":"))
    return {"single": ("/api/activities", single), "batch of 100": ("/api/activities/batch", batch.encode())}


def services() -> Any:
    @asynccontextmanager
    async def provide() -> AsyncIterator[ApiServices]:
        publisher, clock, ids = NoPublisher(), SystemClock(), Uuid7Ids()
        unused = cast(Any, None)  # the reads are not measured
        yield ApiServices(
            record_activity=RecordActivity(publisher, clock, ids),
            record_batch=RecordBatch(publisher, clock, ids, max_items=500),
            list_activities=unused,
            get_activity=unused,
            get_event_status=unused,
            count_activities=unused,
            follow_activities=unused,
            readiness=unused,
        )

    return provide


async def measure(app: Any, path: str, body: bytes, requests: int) -> float:
    """Seconds per request, over ``requests`` sequential requests."""
    headers = [
        (b"host", b"bench"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"authorization", f"Bearer {KEY}".encode()),
    ]
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    started = time.perf_counter()
    for _ in range(requests):
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8000),
        }
        await app(scope, receive, send)
    elapsed = time.perf_counter() - started
    if set(statuses) != {202}:
        raise SystemExit(f"bench.parsing: {path} answered {sorted(set(statuses))}, not only 202")
    return elapsed / requests


async def run(rounds: int) -> dict[str, float]:
    settings = Settings.explicit(
        auth=AuthSettings.explicit(
            api_keys=json.dumps([{"name": "bench", "key": KEY, "scopes": ["activities:write"]}])
        ),
        metrics_enabled=False,
        log_level="WARNING",
    )
    app = create_app(settings, services=services(), rate_limiter=None)
    results: dict[str, float] = {}
    async with app.router.lifespan_context(app):
        for name, (path, body) in bodies().items():
            requests = 2000 if name == "single" else 100
            await measure(app, path, body, requests // 4)  # warm-up
            best = min([await measure(app, path, body, requests) for _ in range(rounds)])
            results[name] = best * 1e6
    return results


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.parsing")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    for name, micros in asyncio.run(run(args.rounds)).items():
        print(f"{name}: {micros:.1f} µs per request")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
