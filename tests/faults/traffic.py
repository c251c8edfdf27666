"""Client load for fault tests: the realistic client, which chooses its event ids and retries.

Every event carries a client-chosen id, and its client and sequence number in ``metadata``. A batch
that does not get a 202 (a 503 or 429, or no answer at all) is sent again, with the same ids, until it
does: this is what the API asks of its clients ("resending with the same id is safe"), and it makes the
expected final state exact: every event the client generated is acknowledged once it is done, and the
database must hold exactly those events, each once. Every attempt is recorded, so a test can say what
the API answered during a fault.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.e2e.processes import AUTH_HEADERS


@dataclass(frozen=True, slots=True)
class Attempt:
    batch: int
    url: str
    sent: float
    """time.monotonic() when the request was sent, and when its answer (or the failure) came."""
    answered: float
    status: int | None
    """None: no HTTP answer (connection refused or reset, timeout)."""
    retry_after: str | None = None
    error: str | None = None

    @property
    def latency(self) -> float:
        return self.answered - self.sent


@dataclass
class Traffic:
    """POSTs batches of ``batch_size`` events at ``rate`` events per second, from ``workers`` threads,
    spreading them over ``urls`` (replicas behind a load balancer); a failed batch is retried on the
    next URL after its Retry-After (capped at ``max_pause`` seconds). ``stop`` ends the generation of new
    batches; ``drain`` waits until every generated batch was acknowledged."""

    urls: list[str]
    rate: float
    batch_size: int = 20
    workers: int = 3
    users: int = 12
    max_pause: float = 1.0
    max_pending: int = 200
    """Batches waiting for a retry; beyond it the client generates nothing new (client backpressure)."""
    prefix: str = field(default_factory=lambda: f"f{uuid.uuid4().hex[:8]}")
    attempts: list[Attempt] = field(default_factory=list)
    acked: set[str] = field(default_factory=set)
    anomalies: list[str] = field(default_factory=list)
    """202 answers that do not accept exactly the ids sent: never expected."""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._retries: deque[tuple[float, int]] = deque()  # (not before, batch)
        self._busy = 0
        self._generated = 0
        self._started = 0.0
        self._generating = True
        self._running = True
        self._turn = 0
        self._threads: list[threading.Thread] = []
        self._in_flight: dict[str, int] = {}

    # --- control ------------------------------------------------------------------------------------------

    def start(self) -> Traffic:
        self._started = time.monotonic()
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(self.workers)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Generate no new batch; batches already generated are still retried until acknowledged."""
        self._generating = False

    def drain(self, timeout: float) -> None:
        """Stop, wait until every generated batch is acknowledged (or ``timeout``), end the workers."""
        self.stop()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.settled:
            time.sleep(0.1)
        self._running = False
        for thread in self._threads:
            thread.join(35)

    def set_urls(self, urls: Sequence[str]) -> None:
        self.urls = list(urls)

    # --- what happened ------------------------------------------------------------------------------------

    @property
    def settled(self) -> bool:
        with self._lock:
            return not self._retries and self._busy == 0 and not self._generating

    @property
    def generated_ids(self) -> list[str]:
        return [self.event_id(seq) for seq in range(self._generated * self.batch_size)]

    @property
    def unacknowledged(self) -> list[str]:
        return [i for i in self.generated_ids if i not in self.acked]

    def event_id(self, seq: int) -> str:
        return event_id(self.prefix, seq)

    def in_flight(self, url: str) -> int:
        """Requests to ``url`` sent and not answered yet."""
        with self._lock:
            return self._in_flight.get(url, 0)

    def between(self, start: float, end: float) -> list[Attempt]:
        """Attempts sent at or after ``start`` and answered at or before ``end`` (monotonic times)."""
        return [a for a in list(self.attempts) if a.sent >= start and a.answered <= end]

    def first_202_sent_after(self, moment: float) -> Attempt | None:
        return min(
            (a for a in list(self.attempts) if a.status == 202 and a.sent >= moment),
            key=lambda a: a.answered,
            default=None,
        )

    # --- the workers --------------------------------------------------------------------------------------

    def _next_batch(self) -> int | None:
        now = time.monotonic()
        with self._lock:
            if self._retries and self._retries[0][0] <= now:
                self._busy += 1
                return self._retries.popleft()[1]
            due = (now - self._started) * self.rate / self.batch_size
            if self._generating and self._generated < due and len(self._retries) < self.max_pending:
                self._generated += 1
                self._busy += 1
                return self._generated - 1
        return None

    def _work(self) -> None:
        with httpx.Client(headers=AUTH_HEADERS, timeout=30) as client:
            while self._running:
                batch = self._next_batch()
                if batch is None:
                    time.sleep(0.005)
                    continue
                pause = self._send(client, batch)
                with self._lock:
                    self._busy -= 1
                    if pause is not None:
                        self._retries.append((time.monotonic() + pause, batch))

    def _items(self, batch: int) -> list[dict[str, Any]]:
        return batch_items(self.prefix, batch, self.batch_size, self.users)

    def _send(self, client: httpx.Client, batch: int) -> float | None:
        """Sends one batch; the pause before its retry, or None once it is acknowledged."""
        with self._lock:
            self._turn += 1
            url = self.urls[self._turn % len(self.urls)]
        items = self._items(batch)
        with self._lock:
            self._in_flight[url] = self._in_flight.get(url, 0) + 1
        sent = time.monotonic()
        try:
            response = client.post(f"{url}/api/activities/batch", json={"activities": items})
        except httpx.HTTPError as exc:
            self.attempts.append(Attempt(batch, url, sent, time.monotonic(), None, error=type(exc).__name__))
            return 0.2
        finally:
            with self._lock:
                self._in_flight[url] -= 1
        retry_after = response.headers.get("retry-after")
        self.attempts.append(Attempt(batch, url, sent, time.monotonic(), response.status_code, retry_after))
        if response.status_code != 202:
            return min(pause_of(retry_after), self.max_pause)
        problem = acknowledge(response.json(), items, self.acked)
        if problem is not None:
            self.anomalies.append(f"batch {batch}: {problem}")
        return None


def event_id(prefix: str, seq: int) -> str:
    return f"{prefix}-{seq:07d}"


def batch_items(prefix: str, batch: int, size: int, users: int = 12) -> list[dict[str, Any]]:
    """The events of batch number ``batch``: ids and ``metadata`` (client, seq) follow from it, so a retry
    resends exactly the same events."""
    first = batch * size
    return [
        {
            "id": event_id(prefix, seq),
            "userId": f"{prefix}-u{seq % users}",
            "action": "fault-load",
            "metadata": {"client": prefix, "seq": seq},
        }
        for seq in range(first, first + size)
    ]


def acknowledge(body: Any, items: list[dict[str, Any]], acked: set[str]) -> str | None:
    """Adds the ids a 202 (its JSON ``body``) accepted to ``acked``; says what is wrong if it did not
    accept exactly ``items``."""
    ids = [r.get("id") for r in body["results"] if r.get("status") == "accepted"]
    acked.update(i for i in ids if isinstance(i, str))
    if ids != [item["id"] for item in items]:
        return f"a 202 accepting {len(ids)} of {len(items)} items, or other ids"
    return None


def pause_of(retry_after: str | None) -> float:
    try:
        return max(0.05, float(retry_after or 0.2))
    except ValueError:
        return 1.0
