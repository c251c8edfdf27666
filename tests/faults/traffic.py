"""Client load for fault tests: the realistic client, which chooses its event ids and retries.

Every event carries a client-chosen id, and its client and sequence number in ``metadata``. A batch
that does not get a 202 (a 503 or 429, or no answer at all) is sent again, with the same ids, until it
does: this is what the API asks of its clients ("resending with the same id is safe"), and it makes the
expected final state exact: every event the client generated is acknowledged once it is done, and the
database must hold exactly those events, each once. Every attempt is recorded, so a test can say what
the API answered during a fault.

With several keys (``keys``, e.g. ``TWO_TENANTS``) every batch is sent by each of them, with the same ids
and the same users: tenants own their ids, so each tenant must end with its own copy of every event, and
the writer's tenant and key name travel in ``metadata`` so the ledger can tell if one ever lands under
another tenant. Acknowledged events are counted by ledger key (``ledger_key``): the id, prefixed with its
tenant outside ``default``.

Why not the Python SDK (activity_client), which resends the same way (same ids, Retry-After honoured):
the scenarios measure and assert what the SDK keeps to itself. They need each attempt's status, URL and
times (the 503 window, ``between``, the first 202 after a fault, the answers to the requests in flight at
a kill), the ids acknowledged so far at any moment (a backlog taken mid-run), ids the test chooses (two
tenants sending the same ids) and a client-side balancer over replicas (the SDK has one base URL, and
reports only counts and the refused events). The overload prober (``overload.Prober``), which needs none
of that, uses the SDK.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.e2e.processes import API_KEY, SCOPES


@dataclass(frozen=True, slots=True)
class ClientKey:
    """An API key the load writes with, and the tenant it belongs to."""

    name: str
    tenant: str
    secret: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


E2E_KEY = ClientKey("e2e", "default", API_KEY)
TWO_TENANTS = (
    ClientKey("faults-acme-web", "acme", "faults-acme-key-0123456789abcdef"),
    ClientKey("faults-globex-web", "globex", "faults-globex-key-0123456789abcdef"),
)


def api_keys(keys: Sequence[ClientKey]) -> dict[str, str]:
    """The deployment setting that holds ``keys`` (to write and read) beside the e2e key (every scope)."""
    entries = [{"name": "e2e", "key": API_KEY, "scopes": SCOPES}]
    entries += [
        {
            "name": k.name,
            "tenant": k.tenant,
            "key": k.secret,
            "scopes": ["activities:write", "activities:read"],
        }
        for k in keys
        if k != E2E_KEY
    ]
    return {"AUTH_API_KEYS": json.dumps(entries)}


def ledger_key(tenant: str, event_id: str) -> str:
    """How the ledger names a stored event: its id, prefixed by its tenant outside ``default``."""
    return event_id if tenant == "default" else f"{tenant}/{event_id}"


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
    keys: tuple[ClientKey, ...] = (E2E_KEY,)
    """Who writes: each batch is sent once by each key (``rate`` counts all of them)."""
    prefix: str = field(default_factory=lambda: f"f{uuid.uuid4().hex[:8]}")
    attempts: list[Attempt] = field(default_factory=list)
    acked: set[str] = field(default_factory=set)
    """Ledger keys (``ledger_key``) of the events acknowledged."""
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
        """Ledger keys of every event generated, each key's own."""
        return [
            ledger_key(key.tenant, event_id(self.prefix, seq))
            for key, batch in map(self._job, range(self._generated))
            for seq in range(batch * self.batch_size, (batch + 1) * self.batch_size)
        ]

    @property
    def tenants(self) -> list[str]:
        return sorted({k.tenant for k in self.keys})

    def key_of(self, tenant: str) -> ClientKey:
        return next(k for k in self.keys if k.tenant == tenant)

    @property
    def unacknowledged(self) -> list[str]:
        return [i for i in self.generated_ids if i not in self.acked]

    def event_id(self, seq: int) -> str:
        return event_id(self.prefix, seq)

    def _job(self, job: int) -> tuple[ClientKey, int]:
        """Job ``job``: batch ``job // len(keys)``, sent by key ``job % len(keys)``."""
        return self.keys[job % len(self.keys)], job // len(self.keys)

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
        with httpx.Client(timeout=30) as client:
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

    def _send(self, client: httpx.Client, batch: int) -> float | None:
        """Sends one batch (a job: the batch and its key); the pause before its retry, or None once it is
        acknowledged."""
        with self._lock:
            self._turn += 1
            url = self.urls[self._turn % len(self.urls)]
        key, number = self._job(batch)
        items = batch_items(self.prefix, number, self.batch_size, self.users, key)
        with self._lock:
            self._in_flight[url] = self._in_flight.get(url, 0) + 1
        sent = time.monotonic()
        try:
            response = client.post(
                f"{url}/api/activities/batch", json={"activities": items}, headers=key.headers
            )
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
        problem = acknowledge(response.json(), items, self.acked, key.tenant)
        if problem is not None:
            self.anomalies.append(f"batch {batch}: {problem}")
        return None


def event_id(prefix: str, seq: int) -> str:
    return f"{prefix}-{seq:07d}"


def batch_items(
    prefix: str, batch: int, size: int, users: int = 12, key: ClientKey = E2E_KEY
) -> list[dict[str, Any]]:
    """The events of batch number ``batch``: ids and ``metadata`` (client, seq) follow from it, so a retry
    resends exactly the same events; every key sends the same ids and users, its own tenant and name in
    ``metadata``."""
    first = batch * size
    return [
        {
            "id": event_id(prefix, seq),
            "userId": f"{prefix}-u{seq % users}",
            "action": "fault-load",
            "metadata": {"client": prefix, "seq": seq, "tenant": key.tenant, "key": key.name},
        }
        for seq in range(first, first + size)
    ]


def acknowledge(
    body: Any, items: list[dict[str, Any]], acked: set[str], tenant: str = "default"
) -> str | None:
    """Adds the ledger keys of the ids a 202 (its JSON ``body``) accepted to ``acked``; says what is wrong
    if it did not accept exactly ``items``."""
    ids = [r.get("id") for r in body["results"] if r.get("status") == "accepted"]
    acked.update(ledger_key(tenant, i) for i in ids if isinstance(i, str))
    if ids != [item["id"] for item in items]:
        return f"a 202 accepting {len(ids)} of {len(items)} items, or other ids"
    return None


def pause_of(retry_after: str | None) -> float:
    try:
        return max(0.05, float(retry_after or 0.2))
    except ValueError:
        return 1.0
