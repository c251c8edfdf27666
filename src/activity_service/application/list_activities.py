"""List activities for dashboards, filtered and paginated, with how fresh the answer is."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from activity_service.application.read_freshness import ReadFreshness
from activity_service.domain.errors import FieldError
from activity_service.domain.ports import ActivityRepository
from activity_service.domain.query import ActivityPage, ActivityQuery, InvalidQuery


@dataclass(frozen=True, slots=True)
class Listing:
    page: ActivityPage
    fresh_until: datetime | None


class ListActivities:
    """One page of stored activities, newest first, and the time up to which the store is complete,
    so that an empty page can be told apart from one whose events are not stored yet.

    What one read may cost is bounded: page mode reads at most ``max_depth`` rows deep (``page x
    limit``; a cursor walk goes any depth at the cost of one page), and counts at most ``max_count``
    matches for its total (the page then says the total is capped)."""

    def __init__(
        self,
        repository: ActivityRepository,
        freshness: ReadFreshness,
        *,
        max_depth: int | None = None,
        max_count: int | None = None,
    ) -> None:
        self._repository = repository
        self._freshness = freshness
        self._max_depth = max_depth
        self._max_count = max_count

    async def execute(self, query: ActivityQuery) -> Listing:
        if self._max_depth is not None and query.after is None and query.page * query.limit > self._max_depth:
            raise InvalidQuery(
                [
                    FieldError(
                        "page",
                        f"page x limit may be at most {self._max_depth} (here {query.page * query.limit}); "
                        "to read deeper, walk with a cursor: cursor= (empty) first, then each nextCursor",
                    )
                ]
            )
        if self._max_count is not None and query.count_total:
            query = replace(query, count_limit=self._max_count)
        # Freshness first: the page then holds at least everything received before it.
        fresh_until = await self._freshness.execute()
        page = await self._repository.find(query)
        return Listing(page=page, fresh_until=fresh_until)
