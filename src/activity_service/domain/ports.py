"""What the application needs from the outside world, named by role. Adapters live in infrastructure."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from activity_service.domain.activity import Activity, EventKey
from activity_service.domain.delivery import DeadLetter, LogPosition, PartitionProgress, Received
from activity_service.domain.erasure import Erasure, UserKey
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
    """What a store did with a batch: every activity is inserted, a duplicate, or rejected; a duplicate
    whose content differs from the stored event's (same id, other fingerprint) is also a conflict.

    ``rejected`` maps events (by tenant and id) to the reason the store refused them for good (no retry
    can help, e.g. a shape the store cannot hold); everything else in the batch is durably stored.
    ``conflicts`` (among the duplicates) were not stored: the tenant's event of that id says otherwise.
    """

    inserted: int
    duplicates: int
    rejected: Mapping[EventKey, str] = field(default_factory=dict)
    conflicts: Sequence[EventKey] = ()


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

    async def get(self, tenant: str, activity_id: str) -> Activity | None:
        """The tenant's event of that id (another tenant's is as absent as an unknown one)."""
        ...

    async def erase(self, erasure: Erasure) -> int:
        """Remove the events the erasure covers (its user's, in its tenant, received before it was
        requested) and take them out of the counts; returns how many were removed. Safe to run again, and
        to run while the consumer stores: what it stores meanwhile is for the next pass (see ErasureLog).
        One pass of an erasure runs at a time (ErasureLog.claim)."""
        ...

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

    async def forget(self, events: Sequence[EventKey]) -> None:
        """Drop the records of events that have since been stored (after a dead-letter replay)."""
        ...

    async def forget_user(self, tenant: str, user_id: str, before: datetime) -> int:
        """Drop the records of the user's events dead-lettered before ``before`` (an erasure); returns
        how many."""
        ...

    async def error_types(self, tenant: str, event_id: str) -> set[str]:
        """Why the tenant's event of that id was dead-lettered (``Conflict``, ``RejectedByStore``...),
        once per kind; empty when it was not."""
        ...


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

    def suppressed(self, count: int) -> None:
        """Events not stored because an erasure covers them."""
        ...


class ErasureLog(Protocol):
    """The erasures requested, kept for good: they also suppress covered events that arrive later."""

    async def add(self, erasure: Erasure) -> None: ...

    async def get(self, tenant: str, erasure_id: str) -> Erasure | None:
        """The tenant's erasure of that id (another tenant's is as absent as an unknown one)."""
        ...

    async def erased_before(self, users: Collection[UserKey]) -> dict[UserKey, datetime]:
        """For those of ``users`` that were erased: the latest time an erasure of them was requested
        (every event of theirs received before it is covered)."""
        ...

    async def claim(self, now: datetime, lease: timedelta) -> Erasure | None:
        """An erasure that is not done and that no one else holds (or whose holder let its lease run out),
        now ``running`` and held until ``now + lease``; None when there is none."""
        ...

    async def record_pass(self, erasure: Erasure, removed: int, now: datetime) -> bool:
        """After a pass of the claimed ``erasure`` that removed ``removed`` events: adds them, and marks it
        ``done`` unless it was raced meanwhile (its generation moved on: it stays to be claimed again).
        Releases the claim. A holder whose lease was taken over only adds what it removed. Returns
        whether it is done."""
        ...

    async def raced(self, users: Collection[UserKey]) -> None:
        """Events that erasures of these users cover were stored after they were requested (a write that
        had not seen the erasure yet): their erasures need another pass (generation + 1, not done)."""
        ...


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
