"""What the application needs from the outside world, named by role. Adapters live in infrastructure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from activity_service.domain.activity import Activity
from activity_service.domain.delivery import DeadLetter, LogPosition, PartitionProgress, Received
from activity_service.domain.query import ActivityPage, ActivityQuery


class EventPublisher(Protocol):
    async def publish(self, activities: Sequence[Activity]) -> None:
        """Return only once the event log has acknowledged every activity.

        Raises PublishUnavailable (or Overloaded) when it cannot, in which case the caller must not
        report the activities as accepted.
        """
        ...

    async def ping(self) -> None:
        """Raise when the event log cannot be reached."""
        ...


@dataclass(frozen=True, slots=True)
class StoreOutcome:
    """What a store did with a batch: every activity is inserted, a duplicate, or rejected.

    ``rejected`` maps event ids to the reason the store refused them for good (no retry can help,
    e.g. a shape the store cannot hold); everything else in the batch is durably stored.
    """

    inserted: int
    duplicates: int
    rejected: Mapping[str, str] = field(default_factory=dict)


class ActivityRepository(Protocol):
    async def add_many(
        self, activities: Sequence[Activity], positions: Sequence[LogPosition] | None = None
    ) -> StoreOutcome:
        """Store each activity under its id, idempotently: an id already stored counts as a duplicate,
        and each stored activity is counted once in the store's counts over time (ActivityCounts).

        ``positions`` says where in the event log each activity was read (same order): a store that cannot
        write events and counts in one transaction uses them to count each event exactly once however
        often its batch is redelivered. Without them every newly stored activity is counted as it is
        stored. Returns once every activity is durably stored or rejected for good (see StoreOutcome);
        raises StoreUnavailable, or another error, when the outcome is not known, so the caller retries.
        """
        ...

    async def get(self, activity_id: str) -> Activity | None: ...

    async def purge_before(self, cutoff: datetime) -> int:
        """Delete the activities whose timestamp is before ``cutoff`` (the start of a UTC day), and their
        counts; return how many."""
        ...

    async def find(self, query: ActivityQuery) -> ActivityPage: ...

    async def ping(self) -> None:
        """Raise when the store cannot be reached."""
        ...


class DeadLetterLog(Protocol):
    async def add(self, letter: DeadLetter) -> None:
        """Record a dead letter; recording the same source twice keeps one record."""
        ...

    async def forget(self, event_ids: Sequence[str]) -> None:
        """Drop the records of events that have since been stored (after a dead-letter replay)."""
        ...

    async def has_event(self, event_id: str) -> bool: ...


class DeadLetterTopic(Protocol):
    async def send(self, message: Received, error_type: str, reason: str) -> None:
        """Copy ``message`` as it was read to the dead-letter topic, saying why; return only once the log
        acknowledged the copy (then the original may be committed past)."""
        ...


class PersistObserver(Protocol):
    """What persisting reports as it goes (metrics)."""

    def stored(self, outcome: StoreOutcome, seconds: float) -> None: ...

    def dead_lettered(self, error_type: str) -> None: ...

    def retried(self, operation: str) -> None: ...


class ProgressLog(Protocol):
    async def record(self, progress: Sequence[PartitionProgress]) -> None:
        """Record how far partitions are persisted; an older offset never overwrites a newer one."""
        ...

    async def read(self, topic: str) -> Sequence[PartitionProgress]: ...


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class IdGenerator(Protocol):
    def new_id(self) -> str:
        """A new, time-ordered event id."""
        ...
