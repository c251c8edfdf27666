"""Where is my event? Stored, dead-lettered, on its way, or unknown."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from activity_service.application.persist_activities import CONFLICT
from activity_service.application.read_freshness import ReadFreshness
from activity_service.domain.ids import uuid7_time
from activity_service.domain.ports import ActivityRepository, DeadLetterLog


class EventStatus(StrEnum):
    PERSISTED = "persisted"
    CONFLICT = "conflict"
    DEAD_LETTERED = "dead_lettered"
    PENDING = "pending"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class StatusReport:
    id: str
    status: EventStatus
    fresh_until: datetime | None


class GetEventStatus:
    """Where the tenant's event of this id stands:

    - ``conflict``: the id came again with other content than the stored event's; that resend was not
      stored (it is on the dead-letter topic), the first content stays;
    - ``persisted`` when the event is stored; ``dead_lettered`` when it was set aside as unstorable;
    - ``pending`` when it is newer than what the consumer has persisted so far (known from the time
      inside a server-assigned UUIDv7 id), so it may still arrive;
    - otherwise ``unknown``: never accepted, another tenant's, or a client-chosen id that carries no time.

    Freshness is read first: if the event is older than that and not stored afterwards, it is not coming.
    """

    def __init__(self, repository: ActivityRepository, dead_letters: DeadLetterLog, freshness: ReadFreshness):
        self._repository = repository
        self._dead_letters = dead_letters
        self._freshness = freshness

    async def execute(self, tenant: str, event_id: str) -> StatusReport:
        fresh_until = await self._freshness.execute()
        set_aside = await self._dead_letters.error_types(tenant, event_id)
        if CONFLICT in set_aside:
            return StatusReport(event_id, EventStatus.CONFLICT, fresh_until)
        if await self._repository.get(tenant, event_id) is not None:
            return StatusReport(event_id, EventStatus.PERSISTED, fresh_until)
        if set_aside:
            return StatusReport(event_id, EventStatus.DEAD_LETTERED, fresh_until)
        created = uuid7_time(event_id)
        if created is not None and (fresh_until is None or created >= fresh_until):
            return StatusReport(event_id, EventStatus.PENDING, fresh_until)
        return StatusReport(event_id, EventStatus.UNKNOWN, fresh_until)
