"""Counts over time for dashboards, with how fresh they are."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from activity_service.application.read_freshness import ReadFreshness
from activity_service.domain.stats import ActivityCounts, BucketCount, CountQuery


@dataclass(frozen=True, slots=True)
class Counts:
    buckets: tuple[BucketCount, ...]
    """Every bucket of the query, in time order, the empty ones included (total 0)."""
    fresh_until: datetime | None


class CountActivities:
    """Exact counts per UTC interval: every bucket from the one holding ``start`` to the one holding
    ``end``, empty ones included, so a chart needs no gap filling. Each stored event is counted once in
    the bucket of its (effective) timestamp. ``fresh_until``: every event received before it is counted.
    """

    def __init__(self, counts: ActivityCounts, freshness: ReadFreshness) -> None:
        self._counts = counts
        self._freshness = freshness

    async def execute(self, query: CountQuery) -> Counts:
        fresh_until = await self._freshness.execute()
        found = {bucket.start: bucket for bucket in await self._counts.count(query)}
        buckets = tuple(self._bucket(query, start, found.get(start)) for start in query.bucket_starts())
        return Counts(buckets=buckets, fresh_until=fresh_until)

    @staticmethod
    def _bucket(query: CountQuery, start: datetime, found: BucketCount | None) -> BucketCount:
        """The bucket as answered; with ``by_action``, every action asked for is named (0 when none)."""
        total = found.total if found is not None else 0
        if not query.by_action:
            return BucketCount(start, total)
        by_action = dict.fromkeys(query.actions, 0)
        by_action.update(found.by_action if found is not None else {})
        return BucketCount(start, total, by_action)
