"""Resends: the same event id again. Same content: the same event (idempotent). Other content: refused."""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime

from activity_service.application.erase_users import LiveErasures
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
    and the event's status reads ``conflict``.

    What an erasure covers is forgotten: an event of an erased user no longer holds its id (a new event
    may take it), and a 409 must not tell a writer what the erased event said."""

    def __init__(self, erased: LiveErasures | None = None, capacity: int = 100_000) -> None:
        # (tenant, id) -> the fingerprint, who the event was of, and when it was received
        self._accepted: OrderedDict[tuple[str, str], tuple[str, str, datetime]] = OrderedDict()
        self._erased = erased
        self._capacity = capacity

    async def conflicts(self, activity: Activity) -> bool:
        if activity.fingerprint is None:
            return False
        key = (activity.tenant, activity.id)
        known = self._accepted.get(key)
        if known is None or known[0] == activity.fingerprint:
            return False
        fingerprint, user_id, received_at = known
        if self._erased is not None:  # only on this rare path: the erasure log is asked for a 409 alone
            erased = await self._erased.latest({(activity.tenant, user_id)})
            requested_at = erased.get((activity.tenant, user_id))
            if requested_at is not None and received_at < requested_at:
                if self._accepted.get(key) == known:
                    del self._accepted[key]
                return False
        return True

    def remember(self, activities: list[Activity]) -> None:
        """Call once the log has them: what was not accepted cannot conflict with anything."""
        for activity in activities:
            if activity.fingerprint is not None:
                key = (activity.tenant, activity.id)
                self._accepted[key] = (activity.fingerprint, activity.user_id, activity.received_at)
                self._accepted.move_to_end(key)
        while len(self._accepted) > self._capacity:
            self._accepted.popitem(last=False)
