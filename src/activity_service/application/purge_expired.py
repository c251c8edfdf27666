"""Retention where the store cannot expire events itself."""

from __future__ import annotations

from activity_service.domain.ports import ActivityRepository, Clock
from activity_service.domain.retention import retention_cutoff


class PurgeExpiredActivities:
    """Delete the activities of every UTC day that ended more than ``days`` days ago (retention_cutoff:
    whole days, so that counts over time stay exact); return how many."""

    def __init__(self, repository: ActivityRepository, clock: Clock, *, days: int) -> None:
        self._repository = repository
        self._clock = clock
        self._days = days

    async def execute(self) -> int:
        cutoff = retention_cutoff(self._clock.now(), self._days)
        return 0 if cutoff is None else await self._repository.purge_before(cutoff)
