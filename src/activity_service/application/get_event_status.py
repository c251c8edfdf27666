"""Where is my event? Stored, dead-lettered, on its way, or unknown."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from activity_service.application.read_freshness import ReadFreshness
from activity_service.domain.ids import uuid7_time
from activity_service.domain.ports import ActivityRepository, DeadLetterLog


class EventStatus(StrEnum):
    PERSISTED = "persisted"
    DEAD_LETTERED = "dead_lettered"
    PENDING = "pending"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class StatusReport:
    id: str
    status: EventStatus
    fresh_until: datetime | None


class GetEventStatus:
    """``persisted`` when the event is stored; ``dead_lettered`` when it was set aside as unstorable;
    ``pending`` when it is newer than what the consumer has persisted so far (known from the time inside
    a server-assigned UUIDv7 id), so it may still arrive; otherwise ``unknown``: never accepted, or a
    client-chosen id that carries no time.

    Freshness is read first: if the event is older than that and not stored afterwards, it is not coming.
    """

    def __init__(self, repository: ActivityRepository, dead_letters: DeadLetterLog, freshness: ReadFreshness):
        self._repository = repository
        self._dead_letters = dead_letters
        self._freshness = freshness

    async def execute(self, event_id: str) -> StatusReport:
        fresh_until = await self._freshness.execute()
        if await self._repository.get(event_id) is not None:
            return StatusReport(event_id, EventStatus.PERSISTED, fresh_until)
        if await self._dead_letters.has_event(event_id):
            return StatusReport(event_id, EventStatus.DEAD_LETTERED, fresh_until)
        created = uuid7_time(event_id)
        if created is not None and (fresh_until is None or created >= fresh_until):
            return StatusReport(event_id, EventStatus.PENDING, fresh_until)
        return StatusReport(event_id, EventStatus.UNKNOWN, fresh_until)
