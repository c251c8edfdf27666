"""Micro-benchmark of one ingest request in-process: `python -m bench.parsing [--rounds N]`.

Drives the real app (create_app: every middleware, auth, the body parsing, the schema and the domain
checks, the answer) straight through its ASGI callable, with a publisher that publishes nothing and no
rate limit, so what is measured is the CPU a request costs the API before Kafka: no sockets, no server,
no event-loop scheduling beyond the request's own awaits. Bodies are those the bench's wrk script sends
(bench/lua/load.lua): one activity, and a batch of 100. Prints the best of several rounds, in µs per
request (best, not mean: on a shared machine the minimum is the least noisy estimate of the cost), of
the process's CPU time rather than wall time, so other processes on the cores do not count. With
--production: metrics on, the rate limiter on (limits raised), INFO logs as JSON lines to a file, and
after each request the access-log call uvicorn makes (same logger, format and arguments).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

from activity_service import bootstrap
from activity_service.application.record_activity import RecordActivity
from activity_service.application.record_batch import RecordBatch
from activity_service.bootstrap import ApiServices
from activity_service.infrastructure import logging as service_logging
from activity_service.infrastructure.logging import configure_logging
from activity_service.infrastructure.settings import AuthSettings, RateLimitSettings, Settings
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
            request_erasure=unused,
            get_erasure=unused,
        )

    return provide


async def measure(app: Any, path: str, body: bytes, requests: int, production: bool = False) -> float:
    """CPU seconds per request, over ``requests`` sequential requests."""
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

    # What uvicorn's access log does for every answer, for a tree whose app does not write its own
    # (before RequestContext did: an A/B of such a tree against a newer one pays the same line on both).
    uvicorn_logs = production and not hasattr(service_logging, "access")
    access = logging.getLogger("uvicorn.access") if uvicorn_logs else None
    started = time.process_time()
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
        if access is not None:
            access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:40000", "POST", path, "1.1", statuses[-1])
    elapsed = time.process_time() - started
    if set(statuses) != {202}:
        raise SystemExit(f"bench.parsing: {path} answered {sorted(set(statuses))}, not only 202")
    return elapsed / requests


async def run(rounds: int, production: bool = False) -> dict[str, float]:
    settings = Settings.explicit(
        auth=AuthSettings.explicit(
            api_keys=json.dumps([{"name": "bench", "key": KEY, "scopes": ["activities:write"]}])
        ),
        metrics_enabled=production,
        log_level="INFO" if production else "WARNING",
        log_format="json",
        rate_limit=RateLimitSettings.explicit(events_per_second=1e8, burst=100_000_000),
    )
    limiter = bootstrap.rate_limiter(settings) if production else None
    if production:  # JSON lines to a file, as a deployment's stderr goes to a collector
        sink = tempfile.TemporaryFile("w")  # noqa: SIM115 (lives as long as the process)
        configure_logging("INFO", "json")
        logging.getLogger().handlers[0].setStream(sink)  # type: ignore[attr-defined]
    app = create_app(settings, services=services(), rate_limiter=limiter)
    results: dict[str, float] = {}
    async with app.router.lifespan_context(app):
        for name, (path, body) in bodies().items():
            requests = 2000 if name == "single" else 100
            await measure(app, path, body, requests // 4, production)  # warm-up
            best = min([await measure(app, path, body, requests, production) for _ in range(rounds)])
            results[name] = best * 1e6
    return results


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.parsing")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--production",
        action="store_true",
        help="production defaults: metrics on, rate limiter on (limits raised), INFO logs as JSON lines to "
        "a file with an access-log line per request as uvicorn writes it",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    results = asyncio.run(run(args.rounds, args.production))
    if args.json:
        print(json.dumps(results))
        return 0
    for name, micros in results.items():
        print(f"{name}: {micros:.1f} µs per request")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
