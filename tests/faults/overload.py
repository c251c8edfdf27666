"""Overload: measure what the API sustains, then offer a multiple of it, open loop (new requests keep coming
at the same rate whatever the answers, as from many independent clients), and watch answers and memory.

The flood speaks HTTP/1.1 over raw asyncio streams, one connection per request, bodies encoded before the
clock starts: on a 2-core machine shared with the API, a full client (httpx) spends more CPU per request
than the API does, and would measure itself rather than the API.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson
from activity_client import Client, Refusal, Stats

from tests.e2e.processes import API_KEY, AUTH_HEADERS
from tests.faults.traffic import E2E_KEY, Attempt, acknowledge, batch_items, pause_of

PATH = "/api/activities/batch"


@dataclass
class Flood:
    url: str
    batch_size: int = 200
    timeout: float = 30
    """Seconds a client waits for an answer, all told, before it gives up (the request is unanswered)."""
    prefix: str = field(default_factory=lambda: f"o{uuid.uuid4().hex[:8]}")
    attempts: list[Attempt] = field(default_factory=list)
    acked: set[str] = field(default_factory=set)
    anomalies: list[str] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    """Batches not acknowledged: resent afterwards (``resend_refused``)."""
    batches: int = 0

    def calibrate(self, seconds: float, concurrency: int) -> float:
        """Closed loop (each of ``concurrency`` clients sends its next batch when the last is answered):
        the events per second the API acknowledged."""
        acked_before = len(self.acked)
        began = time.monotonic()
        asyncio.run(self._closed_loop(seconds, concurrency))
        return (len(self.acked) - acked_before) / (time.monotonic() - began)

    def run(self, rate: float, seconds: float) -> None:
        """Open loop: a batch every ``batch_size / rate`` seconds for ``seconds``, then waits for answers."""
        asyncio.run(self._open_loop(rate, seconds))

    def resend_refused(self, timeout: float) -> None:
        """Sends every refused batch again (same ids) until it is acknowledged, four clients at a time.
        (One httpx client per sender: building a client costs ~25 ms of CPU, more than the request.)

        Hand-rolled, not the Python SDK: these ids were chosen by the flood, and a refused batch may be in
        Kafka already (a 503 after the deadline, an answer that never came); the SDK's track() chooses an
        event's id itself, so it cannot resend them, and new ids would store the events twice."""
        pending = list(self.refused)
        self.refused.clear()
        deadline = time.monotonic() + timeout

        def until_acknowledged(client: httpx.Client, batch: int) -> None:
            items = batch_items(self.prefix, batch, self.batch_size)
            while time.monotonic() < deadline:
                try:
                    response = client.post(PATH, json={"activities": items})
                except httpx.HTTPError:
                    time.sleep(0.2)
                    continue
                if response.status_code == 202:
                    self._acknowledged(batch, items, response.json())
                    return
                time.sleep(min(pause_of(response.headers.get("retry-after")), 1.0))
            self.refused.append(batch)

        def sender(batches: list[int]) -> None:
            with httpx.Client(base_url=self.url, headers=AUTH_HEADERS, timeout=30) as client:
                for batch in batches:
                    until_acknowledged(client, batch)

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(sender, [pending[i::4] for i in range(4)]))

    # --- sending --------------------------------------------------------------------------------------------

    async def _closed_loop(self, seconds: float, concurrency: int) -> None:
        stop = time.monotonic() + seconds

        async def one_client() -> None:
            while time.monotonic() < stop:
                batch = self._next()
                await self._send(batch, self._request(batch))

        await asyncio.gather(*(one_client() for _ in range(concurrency)))

    async def _open_loop(self, rate: float, seconds: float) -> None:
        interval = self.batch_size / rate
        count = int(seconds / interval)
        requests = [(batch, self._request(batch)) for batch in (self._next() for _ in range(count))]
        tasks = []
        began = time.monotonic()
        for index, (batch, request) in enumerate(requests):
            await asyncio.sleep(max(0.0, began + index * interval - time.monotonic()))
            tasks.append(asyncio.create_task(self._send(batch, request)))
        await asyncio.gather(*tasks)

    def _next(self) -> int:
        self.batches += 1
        return self.batches - 1

    def _request(self, batch: int) -> tuple[bytes, list[dict[str, object]]]:
        items = batch_items(self.prefix, batch, self.batch_size)
        body = orjson.dumps({"activities": items})
        host = urlsplit(self.url).netloc
        head = (
            f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {AUTH_HEADERS['Authorization']}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        return head.encode() + body, items

    async def _send(self, batch: int, request: tuple[bytes, list[dict[str, object]]]) -> None:
        raw, items = request
        sent = time.monotonic()
        try:
            status, headers, body = await asyncio.wait_for(self._exchange(raw), self.timeout)
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
            self.attempts.append(
                Attempt(batch, self.url, sent, time.monotonic(), None, error=type(exc).__name__)
            )
            self.refused.append(batch)
            return
        retry_after = headers.get("retry-after")
        self.attempts.append(Attempt(batch, self.url, sent, time.monotonic(), status, retry_after))
        if status == 202:
            self._acknowledged(batch, items, orjson.loads(body))
        else:
            self.refused.append(batch)

    async def _exchange(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(self.url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            writer.write(raw)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            return status, headers, body
        finally:
            writer.close()

    def _acknowledged(self, batch: int, items: list[dict[str, object]], body: object) -> None:
        if (problem := acknowledge(body, items, self.acked)) is not None:
            self.anomalies.append(f"batch {batch}: {problem}")


class Prober:
    """Tracks two events every 200 ms in a background thread through the Python SDK (activity_client),
    one probe at a time, and notes when a probe was accepted within ``prompt`` seconds of being tracked:
    when the API is itself again. The SDK resends a batch that got no 202 (a 503 or no answer may still
    reach Kafka later) with the same ids until one comes, as any client must; after being stopped the
    prober waits up to 30 s more for its last probe, so every id it tracked is acknowledged in the end.

    The SDK does not report its attempts, so a probe is timed from track() to its delivery, not from the
    sending of one attempt to its answer as the hand-rolled prober did: a 503 and then the resend after
    its ``Retry-After`` (1 s) is not prompt, as before; a resend is sent after max(Retry-After, backoff)
    (backoff capped at 1 s here, so the recovering API is probed about every second), where the
    hand-rolled prober resent 200 ms after a refusal, so recovery is seen up to ~1 s later than it was."""

    def __init__(self, url: str, prefix: str, prompt: float = 1.0) -> None:
        self.url = url
        self.prefix = prefix
        self.prompt = prompt
        self.acked: set[str] = set()
        """Ids of the probes the API accepted (every one, once the prober has stopped)."""
        self.refused: list[Refusal] = []
        """Probes the SDK will not deliver (refused by the API, or not confirmed within the 30 s)."""
        self.prompt_answers: list[float] = []
        """time.monotonic() of every prompt 202."""
        self.stats: Stats | None = None
        """The SDK's counters, once the prober has stopped."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(65)  # its last probe: 30 s, and closing the client

    def prompt_since(self, moment: float) -> float | None:
        """Seconds from ``moment`` to the first prompt 202 after it."""
        return next((t - moment for t in list(self.prompt_answers) if t >= moment), None)

    def _run(self) -> None:
        client = Client(
            self.url,
            API_KEY,
            on_error=self.refused.append,
            timeout=30,
            max_backoff=1.0,
            shutdown_timeout=0,  # closed once the last probe is delivered, or given up
        )
        try:
            seq, give_up = 0, float("inf")
            while not self._stop.is_set():
                ids = {client.track(*_probe(self.prefix, n)) for n in (seq, seq + 1)}
                seq += 2
                tracked = time.monotonic()
                while not client.flush(0.2):
                    if self._stop.is_set():
                        give_up = min(give_up, time.monotonic() + 30)
                        if time.monotonic() > give_up:
                            return  # not acknowledged: close() reports these ids to on_error
                delivered = time.monotonic()
                self.acked |= ids - {r.event_id for r in self.refused}
                if delivered - tracked <= self.prompt:
                    self.prompt_answers.append(delivered)
                self._stop.wait(0.2)
        finally:
            client.close()
            self.stats = client.stats


def _probe(prefix: str, seq: int) -> tuple[str, str, dict[str, object]]:
    """track()'s user, action and metadata for probe event ``seq``: the metadata ``batch_items`` gives the
    hand-rolled clients' events, by which the ledger finds an event stored twice (client, seq) and one
    stored under another tenant or key."""
    return (
        f"{prefix}-u{seq % 12}",
        "fault-load",
        {"client": prefix, "seq": seq, "tenant": E2E_KEY.tenant, "key": E2E_KEY.name},
    )


class RssSampler:
    """Samples a process's resident memory every 50 ms in a background thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(rss_kib(self.pid))
            self._stop.wait(0.05)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")
