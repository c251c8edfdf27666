"""What the consumer records about delivery: dead letters and how far each partition is persisted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from activity_service.domain.activity import Activity


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that can never be stored, copied to the dead-letter topic and recorded here.

    ``event_id``, ``tenant`` and ``user_id`` are known when the message was readable enough to carry them
    (an erasure removes the records of its user's events). ``source`` names where it came from
    (``topic:partition:offset``), which is unique, so recording it twice records it once.
    """

    source: str
    event_id: str | None
    error_type: str
    reason: str
    at: datetime
    tenant: str | None = None
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class LogPosition:
    """Where a message sits in the event log: unique, and ordered within its partition."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass(frozen=True, slots=True)
class Received:
    """One message read from the event log, at ``topic``/``partition``/``offset``: the activity it carries,
    or, when it carries none that can be read, ``error_type`` and ``reason`` (and the event id it names,
    when that much is readable). ``key`` and ``value`` are its bytes as read, for a dead-letter copy."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    activity: Activity | None
    error_type: str = ""
    reason: str = ""
    event_id: str | None = None
    tenant: str | None = None
    user_id: str | None = None

    @property
    def source(self) -> str:
        """``topic:partition:offset``: where it came from, unique in the log."""
        return f"{self.topic}:{self.partition}:{self.offset}"

    @property
    def position(self) -> LogPosition:
        return LogPosition(self.topic, self.partition, self.offset)


@dataclass(frozen=True, slots=True)
class Settled:
    """Every message of the batch is stored, was already stored, or is dead-lettered: the batch may be
    committed."""

    records: int
    inserted: int
    duplicates: int
    dead_lettered: int
    suppressed: int = 0
    """Covered by an erasure: not stored, on purpose."""


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    """How far one partition is persisted: every event before ``next_offset`` is stored (or dead-lettered).

    ``last_received_at`` is when the newest of them reached the API. ``caught_up`` says the consumer had
    read everything the partition held when it recorded this, at ``recorded_at``: then nothing received
    before ``recorded_at`` is still missing from this partition.
    """

    topic: str
    partition: int
    next_offset: int
    last_received_at: datetime | None
    caught_up: bool
    recorded_at: datetime

    @property
    def complete_until(self) -> datetime | None:
        """Everything this partition received before this time is persisted."""
        return self.recorded_at if self.caught_up else self.last_received_at


@dataclass(frozen=True, slots=True)
class ReadBatch:
    """Events read again from the log (for a replay): those that decode, where each was read (same order,
    when known), and why the others did not decode."""

    activities: tuple[Activity, ...]
    unreadable: tuple[str, ...] = ()
    positions: tuple[LogPosition, ...] | None = None
