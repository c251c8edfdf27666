"""Retention where the store cannot expire events itself."""

from __future__ import annotations

from datetime import timedelta

from activity_service.domain.ports import ActivityRepository, Clock


class PurgeExpiredActivities:
    """Delete the activities whose timestamp is more than ``days`` days old; return how many."""

    def __init__(self, repository: ActivityRepository, clock: Clock, *, days: int) -> None:
        self._repository = repository
        self._clock = clock
        self._days = days

    async def execute(self) -> int:
        return await self._repository.purge_before(self._clock.now() - timedelta(days=self._days))
