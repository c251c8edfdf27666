"""Scenario S (the SDK): what the Python SDK's ``track()`` costs the application thread that calls it,
and what one SDK client delivers into one API worker (bench/sdk_throughput.py).

Issue #20's targets: p99 <= 20 µs with the memory queue, <= 200 µs with the disk queue (spool). Each
call is timed alone (perf_counter_ns around it), paced at a sustained 20,000 events/s with the thread
spinning between calls (a busy application), after an unmeasured warm-up. Variants, in the bench's own
process, against the real API (one process, consumer stopped) unless said:

- ceiling: json.dumps of the same event (id, user, action, metadata, timestamp already made) and a
  list.append of its bytes, timed the same way, with no other thread: the least any SDK must do per
  event, and this machine's noise floor at the same percentile (on a shared machine its p99 is other
  processes preempting this one, not json.dumps); ratio = track()'s figure over the ceiling's.
- memory queue, delivering: what an application sees (the SDK's sender threads POST batches meanwhile
  and take the GIL to build them and read the answers).
- spool, delivering: the disk queue (a memory-mapped journal: page cache, no fsync).

Every delivering run must end with every event accepted (flush()), or the scenario fails.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from activity_client import Client

from bench import sdk_throughput
from bench.checks import check
from bench.context import Context
from bench.procs import API_KEY
from bench.stats import percentile

RATE = 20_000.0
"""Events per second each variant tracks at: a heavy application, and more than one sender drains."""
COUNTS = {"full": 50_000, "quick": 4_000}
"""Measured calls per variant (2.5 s at RATE for the full plan); a tenth as many warm-up calls first."""
META = {"path": "/pricing", "referrer": "newsletter", "plan": "pro"}


def _paced(call: Callable[[int], object], count: int) -> list[float]:
    """µs of each of ``count`` calls, one every 1/RATE s (spinning between), after count/10 unmeasured."""
    now = time.perf_counter_ns
    for i in range(count // 10):
        call(i)
    samples = [0] * count
    start = time.perf_counter()
    for i in range(count):
        due = start + i / RATE
        while time.perf_counter() < due:
            pass
        t0 = now()
        call(i)
        samples[i] = now() - t0
    return [s / 1000.0 for s in samples]


def _figures(samples: list[float]) -> dict[str, float]:
    return {q: round(percentile(samples, v), 2) for q, v in (("p50", 50), ("p99", 99), ("p99_9", 99.9))}


def _ceiling(count: int) -> dict[str, float]:
    sink: list[bytes] = []
    event = {
        "id": "0192f5a1-7c3e-7d2a-8b1c-3e4f5a6b7c8d",
        "userId": "user-42",
        "action": "page_view",
        "metadata": META,
        "timestamp": "2026-11-26T10:00:00.000Z",
    }
    dumps = json.dumps  # default arguments: its one cached encoder, the cheapest the standard library has
    return _figures(_paced(lambda _: sink.append(dumps(event).encode()), count))


def _track(base_url: str, count: int, spool: str | None, **options: Any) -> tuple[dict[str, float], Client]:
    client = Client(
        base_url,
        API_KEY,
        spool_dir=spool,
        max_queue_size=2 * count,  # no backpressure in this figure: the queue bound is not what it measures
        **options,
    )
    samples = _paced(lambda _: client.track("user-42", "page_view", META), count)
    return _figures(samples), client


def _delivered(client: Client, expected: int) -> dict[str, Any]:
    done = client.flush(180)
    stats = client.stats
    client.close()
    if not done or stats.delivered != expected:
        raise RuntimeError(f"the SDK did not deliver every event it tracked: {stats}")
    return {"requests": stats.requests, "retries": stats.retries, "gzip": stats.gzip}


def run(ctx: Context, batch: dict[str, Any] | None = None) -> dict[str, Any]:
    """``batch``: scenario 3's result from the same run, the throughput variant's comparison."""
    count = COUNTS.get(ctx.plan.name, COUNTS["full"])
    total = count + count // 10
    ctx.say(f"scenario S: ceiling (json.dumps + list.append), {count:,} calls at {RATE:,.0f}/s")
    ceiling = _ceiling(count)
    ctx.say("scenario S: starting the API (consumer stopped) for the SDK to deliver to")
    api = ctx.procs.start_api("api-sdk", ctx.env(ctx.names("sdk")))
    try:
        ctx.say(f"scenario S: track(), memory queue, delivering, {count:,} calls")
        memory, client = _track(api.base_url, count, None)
        memory_delivery = _delivered(client, total)
        with tempfile.TemporaryDirectory(prefix="bench-sdk-spool-") as spool:
            ctx.say(f"scenario S: track(), spool, delivering, {count:,} calls")
            spooled, client = _track(api.base_url, count, spool)
            spool_delivery = _delivered(client, total)
            left = list(Path(spool).iterdir())
        if left:
            raise RuntimeError(f"the spool kept files after every event was delivered: {left}")
        throughput = sdk_throughput.run(ctx, api, batch)
    finally:
        ctx.procs.stop(api)
    ctx.say(
        f"scenario S: track() p99 {memory['p99']} µs (memory), {spooled['p99']} µs (spool); "
        f"ceiling p99 {ceiling['p99']} µs"
    )
    label = "json.dumps + list.append"
    return {
        "title": "Python SDK: track() latency in the calling thread, and one client's throughput",
        "status": "measured",
        "conditions": f"bench process, paced {RATE:,.0f} events/s with spinning, {count:,} timed calls per "
        "variant; API alone (consumer stopped); ratio = track() / ceiling (lower is better). Throughput: "
        "one Client tracking flat out (default queue bound: track() blocks when it is full), then flush(); "
        "ratio = its events/s / scenario 3's batch POST events/s in this run, the API's own batch ceiling",
        "figures": {
            "ceiling_p50_us": ceiling["p50"],
            "ceiling_p99_us": ceiling["p99"],
            "memory_p50_us": memory["p50"],
            "memory_p99_us": memory["p99"],
            "memory_p99_9_us": memory["p99_9"],
            "spool_p50_us": spooled["p50"],
            "spool_p99_us": spooled["p99"],
            "spool_p99_9_us": spooled["p99_9"],
            "memory_requests": memory_delivery["requests"],
            "memory_gzip_at_end": memory_delivery["gzip"],
            "spool_requests": spool_delivery["requests"],
            **throughput["figures"],
        },
        "details": {"memory": memory_delivery, "spool": spool_delivery, **throughput["details"]},
        "checks": [
            check(
                "track() p99, memory queue, delivering",
                memory["p99"],
                "µs",
                ceiling=ceiling["p99"],
                ceiling_label=f"{label} p99",
                target=("<=", 20.0),
            ),
            check(
                "track() p50, memory queue, delivering",
                memory["p50"],
                "µs",
                ceiling=ceiling["p50"],
                ceiling_label=f"{label} p50",
            ),
            check(
                "track() p99, spool, delivering",
                spooled["p99"],
                "µs",
                ceiling=ceiling["p99"],
                ceiling_label=f"{label} p99",
                target=("<=", 200.0),
            ),
            *throughput["checks"],
        ],
    }
