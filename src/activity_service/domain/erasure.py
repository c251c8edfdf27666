"""Erasure: a user's right to be forgotten, within one tenant.

An erasure covers every event of its user in its tenant that the service *received* before the erasure
was requested: those stored are removed (with their counts and dead-letter records), and those still on
their way (the consumer's backlog, a redelivery, a replay, a dead-letter replay) are never stored. Events
received after the request are the user's new data, and are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from activity_service.domain.activity import Activity

UserKey = tuple[str, str]
"""(tenant, user id): a user exists within a tenant only."""


class ErasureStatus(StrEnum):
    PENDING = "pending"
    """Requested; no consumer has started on it yet (one is needed: it runs in the consumer)."""
    RUNNING = "running"
    DONE = "done"
    """Every covered event that was stored is removed; later arrivals of covered events stay suppressed."""


@dataclass(frozen=True, slots=True)
class Erasure:
    id: str
    tenant: str
    user_id: str
    requested_at: datetime
    status: ErasureStatus = ErasureStatus.PENDING
    removed: int = 0
    """Stored events removed so far."""
    finished_at: datetime | None = None
    generation: int = 0
    """Raised whenever covered events were stored after a pass began (a consumer raced the erasure): the
    erasure is done only after a pass of the latest generation."""
    held_until: datetime | None = None
    """Set on a claimed erasure: the end of its holder's lease, which also tells the holder apart (a
    holder whose lease ran out and was taken over can no longer finish it or free it)."""

    @property
    def user(self) -> UserKey:
        return (self.tenant, self.user_id)


def covered(activity: Activity, erased_before: dict[UserKey, datetime]) -> bool:
    """Whether an erasure covers it, given the latest request time of each erased user concerned."""
    requested_at = erased_before.get((activity.tenant, activity.user_id))
    return requested_at is not None and activity.received_at < requested_at
