"""An in-process stand-in for activity-service's batch endpoint, on 127.0.0.1, for tests and the benchmark.

It keeps the contract the SDK relies on: Bearer auth (401), gzip bodies (or, with ``accept_gzip=False``,
today's server that cannot read them: a 400 without results), 413 above ``max_items``, per-item
rejections in a 202 (or a 400 when none is valid), and storage by id, once (``stored``). Tests script
failures (``fail_next``: 429/503 with Retry-After, 401...) and can hold answers (``hold``) to fill the
client's queue. Every request is recorded.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import zlib
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_KEY = "test-key-0123456789"
_NOTHING: dict[str, Any] = {}


@dataclass(frozen=True)
class Seen:
    """One request as the server saw it."""

    at: float  # time.monotonic() when it arrived
    status: int
    ids: list[str]
    sent_at: list[str]
    gzipped: bool


@dataclass
class Planned:
    status: int
    retry_after: str | None = None
    delay: float = 0.0
    """Answer normally (storing the events) after this many seconds: a client timeout."""


@dataclass
class FakeApi:
    api_key: str = API_KEY
    max_items: int = 500
    max_body_bytes: int = 1024 * 1024
    """Decompressed; larger bodies get a 413 (the server's INGEST_MAX_BATCH_BYTES)."""
    accept_gzip: bool = True
    port: int = 0
    hold_after: int | None = None
    """Hold (see hold()) once this many requests were answered."""
    keep_items: bool = True
    """False keeps only the ids (the benchmark's millions of events)."""
    tls: ssl.SSLContext | None = None
    """Serve https with this server context."""
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)
    received: Counter[str] = field(default_factory=Counter)
    """How many times each id came in a request that was read (duplicates show here, not in stored)."""
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._plan: deque[Planned] = deque()
        self._open = threading.Event()
        self._open.set()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # it writes the head and the body separately

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, headers, body = api._answer(self.path, dict(self.headers.items()), raw)
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = _QuietServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    # --- control --------------------------------------------------------------------------------------

    def start(self) -> FakeApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._open.set()
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{'https' if self.tls is not None else 'http'}://{host!s}:{port}"

    def fail_next(self, count: int, status: int, retry_after: str | None = None) -> None:
        with self._lock:
            for _ in range(count):
                self._plan.append(Planned(status, retry_after))

    def slow_next(self, count: int, delay: float) -> None:
        with self._lock:
            for _ in range(count):
                self._plan.append(Planned(202, delay=delay))

    def hold(self) -> None:
        """Requests wait (unanswered) until release()."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def wait_stored(self, count: int, timeout: float = 20.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self.stored) >= count, timeout)

    def wait_requests(self, count: int, timeout: float = 20.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self.seen) >= count, timeout)

    @property
    def duplicates(self) -> int:
        """Ids received more than once (normal after retries; the store keeps one)."""
        with self._lock:
            return sum(1 for n in self.received.values() if n > 1)

    # --- the endpoint ---------------------------------------------------------------------------------

    def _answer(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, str], Any]:
        self._open.wait(60)
        arrived = time.monotonic()
        lower = {k.lower(): v for k, v in headers.items()}
        gzipped = lower.get("content-encoding") == "gzip"
        if path != "/api/activities/batch":
            return self._record(arrived, 404, [], [], gzipped, {}, _problem(404, "Not Found"))
        if lower.get("authorization") != f"Bearer {self.api_key}":
            return self._record(arrived, 401, [], [], gzipped, {}, _problem(401, "Unauthorized"))
        with self._lock:
            planned = self._plan.popleft() if self._plan else None
        if gzipped:
            if not self.accept_gzip:  # what FastAPI answers to bytes that are not JSON
                body = _problem(400, "The request is not valid.")
                body["errors"] = [{"field": "body", "message": "JSON decode error"}]
                return self._record(arrived, 400, [], [], gzipped, {}, body)
            raw = zlib.decompress(raw, wbits=31)
        items = json.loads(raw)["activities"]
        ids = [item.get("id", "") for item in items]
        sent_at = [item.get("sentAt", "") for item in items]
        if planned is not None and planned.delay:
            time.sleep(planned.delay)
        elif planned is not None:
            extra = {"Retry-After": planned.retry_after} if planned.retry_after is not None else {}
            return self._record(
                arrived, planned.status, ids, sent_at, gzipped, extra, _problem(planned.status, "scripted")
            )
        if len(items) > self.max_items or len(raw) > self.max_body_bytes:
            return self._record(arrived, 413, ids, sent_at, gzipped, {}, _problem(413, "too many"))
        results: list[dict[str, Any]] = []
        accepted: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            errors = _errors(item)
            if errors:
                results.append({"index": index, "status": "rejected", "errors": errors})
            else:
                results.append({"index": index, "status": "accepted", "id": item["id"]})
                accepted.append(item)
        body = {"accepted": len(accepted), "rejected": len(items) - len(accepted), "results": results}
        if not accepted:
            problem = _problem(400, "No activity in the batch is valid.")
            return self._record(arrived, 400, ids, sent_at, gzipped, {}, {**problem, **body})
        with self._lock:
            for item in accepted:
                self.stored.setdefault(item["id"], item if self.keep_items else _NOTHING)
        return self._record(arrived, 202, ids, sent_at, gzipped, {}, body)

    def _record(
        self,
        arrived: float,
        status: int,
        ids: list[str],
        sent_at: list[str],
        gzipped: bool,
        headers: dict[str, str],
        body: Any,
    ) -> tuple[int, dict[str, str], Any]:
        with self._changed:
            self.seen.append(Seen(arrived, status, ids, sent_at, gzipped))
            self.received.update(ids)
            if self.hold_after is not None and len(self.seen) >= self.hold_after:
                self._open.clear()
            self._changed.notify_all()
        return status, headers, body


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client killed or gone while its request was held: expected in these tests


def _errors(item: dict[str, Any]) -> list[dict[str, str]]:
    errors = [
        {"field": name, "message": "Field required"}
        for name in ("id", "userId", "action", "sentAt")
        if not item.get(name)
    ]
    if item.get("action") == "invalid":
        errors.append({"field": "action", "message": "is not an action this test accepts"})
    return errors


def _problem(status: int, detail: str) -> dict[str, Any]:
    return {"type": "about:blank", "title": detail, "status": status, "detail": detail}
