"""Resends: the same event id again. Same content: the same event (idempotent). Other content: refused."""

from __future__ import annotations

from collections import OrderedDict

from activity_service.domain.activity import Activity
from activity_service.domain.errors import DomainError


class ConflictingResend(DomainError):
    """An event id the client chose came again with other content (answered 409)."""

    def __init__(self, event_id: str) -> None:
        self.event_id = event_id
        super().__init__(f"the event id {event_id!r} was sent before with other content")


class RecentContent:
    """What this process last accepted under each client-chosen id (per tenant), the most recent
    ``capacity`` of them, so a resend with other content is refused at once (409). Beyond what it holds
    (older ids, another API process) the consumer tells the conflict when it meets the stored event,
    and the event's status reads ``conflict``."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._fingerprints: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._capacity = capacity

    def conflicts(self, activity: Activity) -> bool:
        if activity.fingerprint is None:
            return False
        known = self._fingerprints.get((activity.tenant, activity.id))
        return known is not None and known != activity.fingerprint

    def remember(self, activities: list[Activity]) -> None:
        """Call once the log has them: what was not accepted cannot conflict with anything."""
        for activity in activities:
            if activity.fingerprint is not None:
                key = (activity.tenant, activity.id)
                self._fingerprints[key] = activity.fingerprint
                self._fingerprints.move_to_end(key)
        while len(self._fingerprints) > self._capacity:
            self._fingerprints.popitem(last=False)
