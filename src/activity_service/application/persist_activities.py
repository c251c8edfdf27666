"""Persist a batch of activities read from the event log."""

from __future__ import annotations

from collections.abc import Sequence

from activity_service.domain.activity import Activity
from activity_service.domain.ports import ActivityRepository, StoreOutcome


class PersistActivities:
    """Store every activity exactly once, keyed by its event id.

    A redelivered event (same id) is a duplicate, not an error: at-least-once delivery plus idempotent
    writes gives effectively exactly-once storage. Returns only when the whole batch is durably stored,
    so the caller may then commit its position in the log; raises otherwise, and nothing may be committed.
    """

    def __init__(self, repository: ActivityRepository) -> None:
        self._repository = repository

    async def execute(self, activities: Sequence[Activity]) -> StoreOutcome:
        if not activities:
            return StoreOutcome(inserted=0, duplicates=0)
        return await self._repository.add_many(activities)
