"""Record one activity: validate it, publish it, and report it accepted only once the log has it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from activity_service.application.resends import ConflictingResend, RecentContent
from activity_service.domain.activity import DEFAULT_TENANT, Activity
from activity_service.domain.ports import Clock, EventPublisher, IdGenerator


@dataclass(frozen=True, slots=True)
class ActivityDraft:
    """An activity as a client described it, before the service accepted it."""

    user_id: str
    action: str
    timestamp: datetime | None = None
    sent_at: datetime | None = None
    metadata: Mapping[str, Any] | None = None
    id: str | None = None
    ip_address: str | None = None
    trace_id: str | None = None
    tenant: str = DEFAULT_TENANT
    source: str | None = None
    """The name of the API key that sent it."""

    def to_activity(self, ids: IdGenerator, received_at: datetime) -> Activity:
        """Raises InvalidActivity naming every offending field."""
        return Activity.record(
            id=self.id if self.id is not None else ids.new_id(),
            chosen_id=self.id is not None,
            tenant=self.tenant,
            source=self.source,
            user_id=self.user_id,
            action=self.action,
            received_at=received_at,
            timestamp=self.timestamp,
            sent_at=self.sent_at,
            metadata=self.metadata,
            ip_address=self.ip_address,
            trace_id=self.trace_id,
        )


class RecordActivity:
    """Accept one activity.

    The event id is the client's ``id`` when given (so a retry stores nothing new), else a new UUIDv7;
    ids are unique per tenant. A client-chosen id this process accepted with other content is refused
    (ConflictingResend). The activity is accepted only once the event log acknowledged it; if it cannot
    within the publish deadline, nothing is accepted and the client is told to retry.
    """

    def __init__(
        self, publisher: EventPublisher, clock: Clock, ids: IdGenerator, recent: RecentContent | None = None
    ) -> None:
        self._publisher = publisher
        self._clock = clock
        self._ids = ids
        self._recent = recent if recent is not None else RecentContent()

    async def execute(self, draft: ActivityDraft) -> Activity:
        activity = draft.to_activity(self._ids, self._clock.now())
        if await self._recent.conflicts(activity):
            raise ConflictingResend(activity.id)
        await self._publisher.publish([activity])
        self._recent.remember([activity])
        return activity
