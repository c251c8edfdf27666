"""The live-tail client of scenario 12, a process of its own so that its CPU is not the API's:
`python -m bench.sse_client --url URL --key KEY --streams N --marker PREFIX --out FILE`.

It opens N streams (GET /api/activities/stream) on raw asyncio connections, prints `READY` once every one
has answered 200 and sent its `event: ready`, then reads until SIGTERM, when it writes FILE (JSON) and
exits. It does not parse every event as JSON (200 streams at a few thousand events a second would make
the client the bottleneck): it undoes the chunked transfer coding, counts frames, and looks in each chunk
for the probe events (`"id":"<PREFIX>...`), recording when each stream received each probe
(time.monotonic: CLOCK_MONOTONIC, the same clock in every process of the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class Stream(asyncio.Protocol):
    def __init__(self, number: int, marker: bytes, ready: asyncio.Event, waiting: list[int]) -> None:
        self.number = number
        self.marker = marker
        self._ready, self._waiting = ready, waiting
        self._buffer = bytearray()
        self._headers_done = False
        self._chunked = True
        self._need: int | None = None
        self.status = 0
        self.started = False
        self.events = 0
        self.heartbeats = 0
        self.overflows = 0
        self.bytes = 0
        self.closed_by_server = False
        self.received: dict[str, float] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.bytes += len(data)
        self._buffer += data
        if not self._headers_done:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buffer[:end]).decode("latin-1").lower()
            del self._buffer[: end + 4]
            self._headers_done = True
            self.status = int(head.split(" ", 2)[1])
            self._chunked = "transfer-encoding: chunked" in head
            if self.status != 200:
                self.transport.close()
                self._mark_ready()
                return
        if not self._chunked:
            self._payload(bytes(self._buffer))
            self._buffer.clear()
            return
        view, at = self._buffer, 0
        while True:
            if self._need is None:
                eol = view.find(b"\r\n", at)
                if eol < 0:
                    break
                size = int(bytes(view[at:eol]).split(b";", 1)[0], 16)
                at = eol + 2
                if size == 0:
                    self.closed_by_server = True
                    break
                self._need = size
            if len(view) - at < self._need + 2:
                break
            self._payload(bytes(view[at : at + self._need]))
            at += self._need + 2
            self._need = None
        del self._buffer[:at]

    def _payload(self, chunk: bytes) -> None:
        now = time.monotonic()
        if not self.started and b"event: ready" in chunk:
            self.started = True
            self._mark_ready()
        self.events += chunk.count(b"\nevent: accepted")
        self.heartbeats += chunk.count(b": heartbeat")
        self.overflows += chunk.count(b"event: overflow")
        at = chunk.find(self.marker)
        while at >= 0:
            start = at + 6  # past '"id":"'
            end = chunk.find(b'"', start)
            self.received.setdefault(chunk[start:end].decode(), now)
            at = chunk.find(self.marker, end)

    def _mark_ready(self) -> None:
        self._waiting[0] -= 1
        if self._waiting[0] == 0:
            self._ready.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed_by_server = self.closed_by_server or exc is None


async def main(args: argparse.Namespace) -> dict[str, Any]:
    url = urlsplit(args.url)
    request = (
        f"GET {url.path}{'?' + url.query if url.query else ''} HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Authorization: Bearer {args.key}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    waiting = [args.streams]
    marker = b'"id":"' + args.marker.encode()
    streams = []
    for n in range(args.streams):
        transport, stream = await loop.create_connection(
            lambda n=n: Stream(n, marker, ready, waiting), url.hostname, url.port
        )
        transport.write(request)
        streams.append(stream)
    try:
        await asyncio.wait_for(ready.wait(), timeout=60)
    except TimeoutError:
        print(f"TIMEOUT {waiting[0]} streams did not start", flush=True)
    refused = [s.status for s in streams if s.status != 200]
    print(f"READY {len(streams) - len(refused)} {refused[:5]}", flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    result: dict[str, Any] = {
        "streams": len(streams),
        "refused": refused,
        "closed_by_server": sum(s.closed_by_server for s in streams),
        "events_per_stream": [s.events for s in streams],
        "heartbeats": sum(s.heartbeats for s in streams),
        "overflows": sum(s.overflows for s in streams),
        "bytes": sum(s.bytes for s in streams),
        "received": [s.received for s in streams],
    }
    return result


def _write(path: str, result: dict[str, Any]) -> int:
    Path(path).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.sse_client", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--marker", required=True)
    parser.add_argument("--out", required=True)
    arguments = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        sys.exit(_write(arguments.out, asyncio.run(main(arguments))))
    sys.exit(_write(arguments.out, uvloop.run(main(arguments))))
