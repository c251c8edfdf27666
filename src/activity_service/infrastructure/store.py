"""One database's adapters for every store port, opened and closed together.

Each store technology has an ``open_*_store`` (mongo/store.py; more to come) yielding a Store; bootstrap
picks one by the STORE setting, and nothing else in the service knows which it is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from activity_service.domain.ports import ActivityRepository, DeadLetterLog, ErasureLog, ProgressLog
from activity_service.domain.stats import ActivityCounts


@dataclass(frozen=True, slots=True)
class Store:
    kind: str
    """Which store setting chose it (``mongodb``): also the name readiness reports it under."""
    server: str
    """What the database reported itself as, for the logs (e.g. ``FerretDB v1.24.2``)."""
    where: str
    """Which database on it, for the logs and tools (e.g. ``database activity_service``)."""
    activities: ActivityRepository
    counts: ActivityCounts
    dead_letters: DeadLetterLog
    progress: ProgressLog
    erasures: ErasureLog
    ping: Callable[[], Awaitable[None]]
    apply_retention: Callable[[int], Awaitable[bool]]
    """Make the database expire events that many days after their timestamp (0: keep them); False when
    it cannot, and the consumer must purge them itself."""
    batches_at_once: bool = False
    """Whether the consumer may write several batches at once (CONSUMER_BATCHES_IN_FLIGHT): its counts
    stay exact only where concurrent writes to one count row are atomic. PostgreSQL: yes (one
    transaction per batch, rows locked). MongoDB: one batch at a time: with two in flight on FerretDB
    (never sharing a partition), the e2e counts test found an hour bucket 2 events short after consumer
    kills, 1 run in 5. The cause is not pinned down; the suspect is two updates of one count document at
    once, whose optimistic check names only each one's own partition."""
