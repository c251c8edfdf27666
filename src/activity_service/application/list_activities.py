"""List activities for dashboards, filtered and paginated, with how fresh the answer is."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from activity_service.application.read_freshness import ReadFreshness
from activity_service.domain.ports import ActivityRepository
from activity_service.domain.query import ActivityPage, ActivityQuery


@dataclass(frozen=True, slots=True)
class Listing:
    page: ActivityPage
    fresh_until: datetime | None


class ListActivities:
    """One page of stored activities, newest first, and the time up to which the store is complete,
    so that an empty page can be told apart from one whose events are not stored yet."""

    def __init__(self, repository: ActivityRepository, freshness: ReadFreshness) -> None:
        self._repository = repository
        self._freshness = freshness

    async def execute(self, query: ActivityQuery) -> Listing:
        # Freshness first: the page then holds at least everything received before it.
        fresh_until = await self._freshness.execute()
        page = await self._repository.find(query)
        return Listing(page=page, fresh_until=fresh_until)
