"""The SDK against the real activity-service app (create_app: middleware, auth, rate limit, routes,
problem mapping) over the server's in-memory fakes, served by uvicorn on 127.0.0.1. No broker, no
database: it checks the HTTP contract the SDK relies on, where the fake API of tests/ only imitates it.

Run from a checkout of the service, with its environment (it imports the app and tests/http's fakes):

    cd <service checkout> && .venv/bin/python <this repo>/clients/python/scripts/check_against_app.py

Prints one line per check and exits non-zero if one fails.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path[:0] = [os.getcwd(), str(Path(__file__).resolve().parents[1] / "src")]

import uvicorn  # noqa: E402
from activity_service.infrastructure.rate_limit import TokenBuckets  # noqa: E402
from activity_service.interfaces.http.app import create_app  # noqa: E402
from tests.http.conftest import FULL_KEY, Fakes, settings  # noqa: E402

from activity_client import Client, Refusal  # noqa: E402

FAST: dict[str, Any] = {"flush_interval": 0.02, "backoff_base": 0.01, "max_backoff": 0.2}
failures: list[str] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
    if not ok:
        failures.append(name)


class Served:
    def __init__(self, fakes: Fakes, rate_limiter: TokenBuckets | None = None) -> None:
        config = settings()
        app = create_app(
            config, services=fakes.services(config.ingest.max_batch_items), rate_limiter=rate_limiter
        )
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def published(fakes: Fakes) -> dict[str, Any]:
    return {a.id: a for a in fakes.publisher.published}


def main() -> int:
    fakes = Fakes()
    with Served(fakes) as url:
        refusals: list[Refusal] = []
        with Client(url, FULL_KEY, on_error=refusals.append, **FAST) as client:
            ids = [client.track(f"u{i % 5}", "page_view", {"i": i}) for i in range(1_000)]
            good = client.track("u1", "login")
            bad = client.track("u1", "login", {"$where": "1"})
            delivered = client.flush(20)
            stats = client.stats
        stored = published(fakes)
        check("1,000 events accepted under the ids the client chose", delivered and set(ids) <= set(stored))
        check(
            "gzip default: today's server cannot read it, the SDK falls back to plain JSON",
            not stats.gzip,
            f"gzip still on: {stats.gzip}",
        )
        item = stored.get(good)
        check("sentAt and timestamp reach the server", item is not None and item.sent_at is not None)
        check(
            "an invalid item is refused through on_error with the server's reasons",
            [(r.event_id, r.reason) for r in refusals] == [(bad, "rejected")] and bad not in stored,
            str([(r.reason, r.message) for r in refusals]),
        )

        refusals.clear()
        with Client(
            url, "not-a-key-of-this-server", on_error=refusals.append, auth_retry_time=0.3, **FAST
        ) as c:
            event = c.track("u1", "login")
            c.flush(10)
        check(
            "a wrong key is 401, retried for auth_retry_time, then refused",
            [(r.event_id, r.reason, r.status) for r in refusals] == [(event, "unauthorized", 401)],
        )

        with Client(url, FULL_KEY, max_batch_size=500, max_batch_bytes=8 << 20, gzip=False, **FAST) as client:
            big = [client.track("u1", "upload", {"blob": "x" * 3_000, "i": i}) for i in range(500)]
            delivered = client.flush(30)
        check(
            "a body over INGEST_MAX_BATCH_BYTES is 413, split and delivered",
            delivered and set(big) <= set(published(fakes)),
        )

        fakes.publisher.down = True
        with Client(url, FULL_KEY, **FAST) as client:
            during = [client.track("u1", "login") for _ in range(50)]
            client.flush(0.5)
            retried = client.stats.retries
            fakes.publisher.down = False
            delivered = client.flush(30)
        check(
            "a broker outage is 503 + Retry-After, resent with the same ids once it is back",
            retried >= 1 and delivered and set(during) <= set(published(fakes)),
            f"retries {retried}",
        )

    fakes = Fakes()
    with Served(fakes, TokenBuckets(rate=2_000, capacity=500)) as url:
        start = time.monotonic()
        with Client(url, FULL_KEY, **FAST) as client:
            limited = [client.track("u1", "login") for _ in range(5_000)]
            delivered = client.flush(60)
            retried = client.stats.retries
        elapsed = time.monotonic() - start
        check(
            "over the rate limit: 429 + Retry-After, all delivered at about the limit",
            delivered and set(limited) <= set(published(fakes)) and retried >= 1,
            f"{elapsed:.1f} s for 5,000 at 2,000/s, {retried} retries",
        )
    print(f"{len(failures)} failed" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    sys.exit(main())
