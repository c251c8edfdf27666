"""Steady load through the real API, remembering every id that got a 202."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field

import httpx

from tests.e2e.processes import AUTH_HEADERS


@dataclass
class Stream:
    """POSTs batches of ``batch_size`` events in a background thread until ``total`` were sent."""

    base_url: str
    total: int
    batch_size: int = 20
    user_prefix: str = field(default_factory=lambda: f"s{uuid.uuid4().hex[:6]}")
    accepted: list[str] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)
    _thread: threading.Thread | None = None

    def start(self) -> Stream:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float = 120) -> None:
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the load stream did not finish"

    @property
    def sent(self) -> int:
        return len(self.accepted) + len(self.failures) * self.batch_size

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, headers=AUTH_HEADERS, timeout=30) as client:
            for start in range(0, self.total, self.batch_size):
                items = [
                    {"userId": f"{self.user_prefix}-{i % 7}", "action": "stream", "metadata": {"n": i}}
                    for i in range(start, min(start + self.batch_size, self.total))
                ]
                try:
                    response = client.post("/api/activities/batch", json={"activities": items})
                except httpx.HTTPError:
                    self.failures.append(0)
                    continue
                if response.status_code == 202:
                    self.accepted.extend(r["id"] for r in response.json()["results"])
                else:
                    self.failures.append(response.status_code)
