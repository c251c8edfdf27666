"""Read one stored activity by its id."""

from __future__ import annotations

from activity_service.domain.activity import Activity
from activity_service.domain.errors import ActivityNotFound
from activity_service.domain.ports import ActivityRepository


class GetActivity:
    """Return the tenant's stored activity with this id; ActivityNotFound when none is stored (yet), and
    when the id is another tenant's: the two cannot be told apart."""

    def __init__(self, repository: ActivityRepository) -> None:
        self._repository = repository

    async def execute(self, tenant: str, activity_id: str) -> Activity:
        activity = await self._repository.get(tenant, activity_id)
        if activity is None:
            raise ActivityNotFound(activity_id)
        return activity
