"""List activities for dashboards, filtered and paginated."""

from __future__ import annotations

from activity_service.domain.ports import ActivityRepository
from activity_service.domain.query import ActivityPage, ActivityQuery


class ListActivities:
    """Return one page of stored activities, newest first, with the total that matches the filters."""

    def __init__(self, repository: ActivityRepository) -> None:
        self._repository = repository

    async def execute(self, query: ActivityQuery) -> ActivityPage:
        return await self._repository.find(query)
