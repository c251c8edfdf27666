"""Benchmark of the SDK's own costs: track() latency and events/s, against a fake API in another process.

    python bench_sdk.py            # about a minute
    python bench_sdk.py --quick    # a few seconds, smaller counts

The fake API (tests/fake_api.py: gzip decoding, JSON parsing, per-item results, storage by id) runs in
a process of its own, so that it does not share the SDK's GIL; on a 2-core machine each gets a core.
track() latency is measured per call with perf_counter_ns: in a tight loop (more than the SDK can send,
so the queue is unbounded here to keep backpressure out of the figure), and paced at 20,000 events/s,
spinning between calls (a busy application thread) or sleeping between bursts of 100 (an idle one: the
first call after each sleep meets cold CPU caches, which is what its p99 shows).
Events/s is N events tracked as fast as possible, then flush(), over the time until flush() returned:
every event had its 202.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from activity_client import Client

KEY = "bench-key-0123456789"


def _serve(conn: Connection) -> None:
    """The fake API's endpoint behind a single-threaded asyncio server: the threaded test server's
    handler threads queue for the GIL (measured: 53% of a core busy at 600 requests/s), this one
    does not, so the SDK is what limits the figures."""
    import asyncio
    import json

    from tests.fake_api import FakeApi

    api = FakeApi(api_key=KEY, keep_items=False)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = dict(line.split(": ", 1) for line in lines[1:] if line)
                length = next((int(v) for k, v in headers.items() if k.lower() == "content-length"), 0)
                status, extra, body = api._answer(path, headers, await reader.readexactly(length))
                data = json.dumps(body).encode()
                head = "".join(f"{k}: {v}\r\n" for k, v in extra.items())
                writer.write(
                    f"HTTP/1.1 {status} X\r\n{head}Content-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n".encode()
                    + data
                )
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        conn.send(f"http://127.0.0.1:{port}")
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until told to stop
        conn.send(len(api.stored))

    asyncio.run(main())


def _pct(samples: list[int], q: float) -> float:
    return sorted(samples)[min(len(samples) - 1, int(len(samples) * q))] / 1000.0


def _latency(url: str, n: int, spool: str | None, rate: float | None, busy: bool) -> tuple[float, ...]:
    """track() p50, p99, p99.9 in µs over n calls: a tight loop (rate None), or paced at ``rate``
    events/s, either sleeping after each burst of 100 or spinning between calls (``busy``)."""
    client = Client(url, KEY, spool_dir=spool, max_queue_size=n + 1)  # no backpressure in this figure
    samples: list[int] = []
    now = time.perf_counter_ns
    meta = {"path": "/pricing", "referrer": "newsletter"}
    start = time.perf_counter()
    for i in range(n):
        if rate is not None:
            due = start + i / rate
            if busy:
                while time.perf_counter() < due:
                    pass
            elif i % 100 == 0 and (ahead := due - time.perf_counter()) > 0:
                time.sleep(ahead)
        t0 = now()
        client.track("user-42", "page_view", meta)
        samples.append(now() - t0)
    assert client.flush(120), "not delivered"
    client.close()
    return _pct(samples, 0.5), _pct(samples, 0.99), _pct(samples, 0.999)


def _median(runs: list[tuple[float, ...]]) -> tuple[float, ...]:
    return tuple(statistics.median(column) for column in zip(*runs, strict=True))


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
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.rounds = 1
    n_lat, n_tput = (20_000, 50_000) if args.quick else (200_000, 300_000)

    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(theirs,), daemon=True)
    server.start()
    url = ours.recv()
    spool_root = tempfile.mkdtemp(prefix="activity-bench-")
    print(
        f"# activity-client benchmark: Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{platform.machine()}, load average {os.getloadavg()[0]:.2f}, fake API in another process at {url}"
    )
    try:
        print(
            f"\n| track(), median of {args.rounds} rounds | p50 µs | p99 µs | p99.9 µs |\n|---|---|---|---|"
        )
        for queue, spool in [("memory queue", None), ("spool", "spool")]:
            for label, rate, busy in [
                ("tight loop", None, False),
                ("paced 20k/s, busy between calls", 20_000.0, True),
                ("paced 20k/s, sleeping between bursts of 100", 20_000.0, False),
            ]:
                count = n_lat if rate is None else n_lat // 4
                runs = [
                    _latency(url, count, spool and os.path.join(spool_root, f"{spool}{k}"), rate, busy)
                    for k in range(args.rounds)
                ]
                p50, p99, p999 = _median(runs)
                print(f"| {queue}, {label} | {p50:.1f} | {p99:.1f} | {p999:.1f} |", flush=True)

        print(f"\n| delivery: track N, then flush(); median of {args.rounds} | events/s |\n|---|---|")
        for label, threads, spool, options in [
            ("1 thread, memory queue, gzip", 1, None, {}),
            ("4 threads, memory queue, gzip", 4, None, {}),
            ("1 thread, memory queue, no gzip", 1, None, {"gzip": False}),
            ("1 thread, spool, gzip", 1, "c", {}),
            ("4 threads, spool, gzip", 4, "d", {}),
        ]:
            rates = [
                _throughput(
                    url, n_tput, threads, spool and os.path.join(spool_root, f"{spool}{k}"), **options
                )
                for k in range(args.rounds)
            ]
            print(f"| {label} | {statistics.median(rates):,.0f} |", flush=True)
    finally:
        ours.send("stop")
        stored = ours.recv()
        server.join(10)
        shutil.rmtree(spool_root, ignore_errors=True)
    print(f"\nfake API stored {stored:,} distinct events", file=sys.stderr)


if __name__ == "__main__":
    main()
