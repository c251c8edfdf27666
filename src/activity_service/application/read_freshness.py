"""Freshness: up to when is the store complete?"""

from __future__ import annotations

from datetime import datetime

from activity_service.domain.ports import ProgressLog


class ReadFreshness:
    """Every event received before the returned time is stored (or dead-lettered).

    It is the earliest of the partitions' "complete until" times, from the consumer's progress records;
    None while some partition has no record yet (no consumer has reported it), so a reader can tell "no
    events" from "not stored yet". While no consumer runs, it stays where they stopped.
    """

    def __init__(self, progress: ProgressLog, topic: str, *, partitions: int) -> None:
        self._progress = progress
        self._topic = topic
        self._partitions = partitions

    async def execute(self) -> datetime | None:
        records = await self._progress.read(self._topic)
        if len({p.partition for p in records}) < self._partitions:
            return None
        times = [p.complete_until for p in records]
        if any(t is None for t in times):
            return None
        return min(t for t in times if t is not None)
