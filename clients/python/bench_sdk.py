"""Benchmark of the SDK's own costs: track() latency and events/s, against a fake API in another process.

    python bench_sdk.py            # about a minute
    python bench_sdk.py --quick    # a few seconds, smaller counts

The fake API (tests/fake_api.py: gzip decoding, JSON parsing, per-item results, storage by id) runs in
a process of its own, so that it does not share the SDK's GIL; on a 2-core machine each gets a core.
track() latency is measured per call with perf_counter_ns, (a) in a tight loop (the worst case: the
sender threads compete with the tracking thread for the GIL) and (b) paced at a steady offered rate.
Events/s is N events tracked as fast as possible, then flush(), over the time until flush() returned:
every event had its 202.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from activity_client import Client

KEY = "bench-key-0123456789"


def _serve(conn: Connection) -> None:
    from tests.fake_api import FakeApi

    api = FakeApi(api_key=KEY, keep_items=False).start()
    conn.send(api.url)
    conn.recv()  # until told to stop
    conn.send(len(api.stored))
    api.stop()


def _pct(samples: list[int], q: float) -> float:
    return sorted(samples)[min(len(samples) - 1, int(len(samples) * q))] / 1000.0


def _latency(url: str, n: int, spool: str | None, rate: float | None) -> tuple[float, float, float]:
    """track() p50, p99, p99.9 in µs over n calls (tight loop, or paced at ``rate`` events/s)."""
    client = Client(url, KEY, spool_dir=spool, max_queue_size=max(n, 10_000) + 1)
    samples: list[int] = []
    now = time.perf_counter_ns
    meta = {"path": "/pricing", "referrer": "newsletter"}
    start = time.perf_counter()
    for i in range(n):
        if rate is not None and i % 100 == 0:  # paced: bursts of 100, then sleep to the schedule
            ahead = start + i / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
        t0 = now()
        client.track("user-42", "page_view", meta)
        samples.append(now() - t0)
    assert client.flush(120), "not delivered"
    client.close()
    return _pct(samples, 0.5), _pct(samples, 0.99), _pct(samples, 0.999)


def _throughput(url: str, n: int, threads: int, spool: str | None, **options: Any) -> float:
    client = Client(url, KEY, spool_dir=spool, **options)
    meta = {"path": "/pricing", "referrer": "newsletter"}
    per = n // threads

    def work() -> None:
        for _ in range(per):
            client.track("user-42", "page_view", meta)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert client.flush(300), "not delivered"
    elapsed = time.perf_counter() - start
    stats = client.stats
    client.close()
    assert stats.delivered == per * threads and stats.refused == 0 and stats.dropped == 0, stats
    return per * threads / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_lat, n_tput = (20_000, 50_000) if args.quick else (200_000, 300_000)

    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(theirs,), daemon=True)
    server.start()
    url = ours.recv()
    spool_root = tempfile.mkdtemp(prefix="activity-bench-")
    print(f"# activity-client benchmark: Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"{platform.machine()}, fake API in another process at {url}")
    try:
        print("\n| track() | p50 µs | p99 µs | p99.9 µs |\n|---|---|---|---|")
        for label, spool, rate in [
            ("memory queue, tight loop", None, None),
            ("memory queue, paced 20k/s", None, 20_000.0),
            ("spool, tight loop", os.path.join(spool_root, "a"), None),
            ("spool, paced 20k/s", os.path.join(spool_root, "b"), 20_000.0),
        ]:
            p50, p99, p999 = _latency(url, n_lat if rate is None else n_lat // 4, spool, rate)
            print(f"| {label} | {p50:.1f} | {p99:.1f} | {p999:.1f} |", flush=True)

        print("\n| delivery (track N, then flush) | events/s |\n|---|---|")
        for label, threads, spool, options in [
            ("1 thread, memory queue, gzip", 1, None, {}),
            ("4 threads, memory queue, gzip", 4, None, {}),
            ("1 thread, memory queue, no gzip", 1, None, {"gzip": False}),
            ("1 thread, memory queue, batches of 500", 1, None, {"max_batch_size": 500}),
            ("1 thread, spool, gzip", 1, os.path.join(spool_root, "c"), {}),
            ("4 threads, spool, gzip", 4, os.path.join(spool_root, "d"), {}),
        ]:
            rate = _throughput(url, n_tput, threads, spool, **options)
            print(f"| {label} | {rate:,.0f} |", flush=True)
    finally:
        ours.send("stop")
        stored = ours.recv()
        server.join(10)
        shutil.rmtree(spool_root, ignore_errors=True)
    print(f"\nfake API stored {stored:,} distinct events", file=sys.stderr)


if __name__ == "__main__":
    main()
