"""The live feed: activities as the event log accepts them, before they are stored, for live views."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from activity_service.domain.activity import DEFAULT_TENANT, Activity
from activity_service.domain.errors import DomainError

Cursor = Mapping[int, int]
"""Per partition of the log, the offset of the next message to deliver: where a follower stands."""


@dataclass(frozen=True, slots=True)
class FeedFilter:
    """One tenant's activities; the rest are exact matches, as the list's filters (empty: everything)."""

    user_id: str | None = None
    actions: tuple[str, ...] = ()
    tenant: str = DEFAULT_TENANT

    def matches(self, activity: Activity) -> bool:
        return (
            activity.tenant == self.tenant
            and (self.user_id is None or activity.user_id == self.user_id)
            and (not self.actions or activity.action in self.actions)
        )


@dataclass(frozen=True, slots=True)
class FeedEntry:
    activity: Activity
    cursor: Cursor
    """Where the follower stands once this activity is delivered: resuming from it gives what follows,
    with no gap and no repeat."""
    key: object
    """Identifies this activity's message in the log (for a reader that renders each message once)."""


@dataclass(frozen=True, slots=True)
class FeedBatch:
    entries: Sequence[FeedEntry]
    cursor: Cursor
    """Where the follower stands after the batch (the first batch may be empty: where it starts)."""


class FeedUnavailable(DomainError):
    """The event log cannot be read right now; following may be retried."""


class FeedOverflow(DomainError):
    """The follower fell so far behind that what it has not received yet is no longer held for it."""


class ActivityFeed(Protocol):
    def follow(self, matching: FeedFilter, start: Cursor | None) -> AsyncIterator[FeedBatch]:
        """Every matching activity from ``start`` (None: from now), in batches as they arrive, the first
        at once (maybe empty) to say where the follower starts; raises FeedOverflow when the follower
        cannot be served without a gap."""
        ...
