"""A process that uses the Python SDK, run by test_sdk.py: what an application does, and what it reports.

    python sdk_worker.py track URL KEY SPOOL START COUNT hang|close
    python sdk_worker.py fork URL KEY COUNT

Every event it tracks is written to stdout as ``<who> <seq> <id>`` once track() has returned (with a
spool: once the event is on disk), one os.write a line, so a test that SIGKILLs it knows what was
tracked. ``track ... hang`` then waits on stdin to be killed; ``track ... close`` flushes, closes and
writes ``done <stats as JSON>``. ``fork`` tracks COUNT events, forks; the child tracks COUNT of its own
with the client made before the fork, flushes and exits; the parent tracks COUNT more meanwhile, then
writes ``done <child's exit code> <stats>``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

from activity_client import Client


def _client(url: str, key: str, spool: str | None = None) -> Client:
    return Client(url, key, spool_dir=spool, flush_interval=0.05, backoff_base=0.05, max_backoff=1.0)


def _track(client: Client, who: str, seq: int) -> None:
    event_id = client.track(f"sdk-{who}", "click", {"seq": seq, "who": who})
    os.write(1, f"{who} {seq} {event_id}\n".encode())


def _done(*parts: object) -> None:
    os.write(1, ("done " + " ".join(str(p) for p in parts) + "\n").encode())


def track(url: str, key: str, spool: str, start: int, count: int, then: str) -> None:
    client = _client(url, key, spool)
    for seq in range(start, start + count):
        _track(client, "w", seq)
    if then == "hang":
        os.write(1, b"tracked\n")
        sys.stdin.read()
        return
    delivered = client.flush(180)
    stats = client.stats
    client.close()
    _done(json.dumps({**dataclasses.asdict(stats), "flushed": delivered}))


def fork(url: str, key: str, count: int) -> None:
    client = _client(url, key)
    for seq in range(count):
        _track(client, "parent", seq)
    client.flush(60)  # the parent has connections open and sender threads running when it forks
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            for seq in range(count):
                _track(client, "child", seq)
            stats = client.stats
            code = 0 if client.flush(120) and client.stats.delivered == count else 4
            client.close()
            os.write(2, f"child: {stats}\n".encode())
        finally:
            os._exit(code)  # never back into the parent's code
    for seq in range(count, 2 * count):
        _track(client, "parent", seq)
    _, status = os.waitpid(pid, 0)
    flushed = client.flush(120)
    stats = client.stats
    client.close()
    _done(os.waitstatus_to_exitcode(status), json.dumps({**dataclasses.asdict(stats), "flushed": flushed}))


if __name__ == "__main__":
    mode, url, key, *rest = sys.argv[1:]
    if mode == "track":
        track(url, key, rest[0], int(rest[1]), int(rest[2]), rest[3])
    else:
        fork(url, key, int(rest[0]))
