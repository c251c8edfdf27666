"""Replay: store again what the event log holds. Safe any number of times, since writes are idempotent."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from activity_service.domain.activity import EventKey
from activity_service.domain.delivery import ReadBatch
from activity_service.domain.ports import ActivityRepository, DeadLetterLog


@dataclass(slots=True)
class ReplayReport:
    read: int = 0
    inserted: int = 0
    duplicates: int = 0
    rejected: dict[EventKey, str] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    expired: int = 0

    def summary(self) -> str:
        return (
            f"{self.read} events read: {self.inserted} stored, {self.duplicates} already stored, "
            f"{len(self.rejected)} refused by the database, {len(self.unreadable)} unreadable, "
            f"{self.expired} past retention"
        )


class ReplayActivities:
    """Re-persist every event the batches carry.

    Events already stored count as duplicates and change nothing; events the store refuses and messages
    that cannot be read are reported, never dropped silently (they stay on their topic). Events older
    than retention keeps (``expired_before``) are not stored again: retention removed them on purpose.
    With ``forget_dead_letters`` (a dead-letter replay) the dead-letter records of events now stored are
    removed, so their status reads "persisted".
    """

    def __init__(self, repository: ActivityRepository, dead_letters: DeadLetterLog) -> None:
        self._repository = repository
        self._dead_letters = dead_letters

    async def execute(
        self,
        batches: AsyncIterable[ReadBatch],
        *,
        forget_dead_letters: bool = False,
        expired_before: datetime | None = None,
        on_progress: Callable[[ReplayReport], None] | None = None,
    ) -> ReplayReport:
        report = ReplayReport()
        async for read in batches:
            report.read += len(read.activities) + len(read.unreadable)
            report.unreadable.extend(read.unreadable)
            batch = _unexpired(read, expired_before)
            report.expired += len(read.activities) - len(batch.activities)
            if batch.activities:
                outcome = await self._repository.add_many(batch.activities, batch.positions)
                report.inserted += outcome.inserted
                report.duplicates += outcome.duplicates
                report.rejected.update(outcome.rejected)
                if forget_dead_letters:
                    await self._dead_letters.forget(
                        [
                            a.key
                            for a in batch.activities
                            if a.key not in outcome.rejected and a.key not in outcome.conflicts
                        ]
                    )
            if on_progress is not None:
                on_progress(report)
        return report


def _unexpired(batch: ReadBatch, expired_before: datetime | None) -> ReadBatch:
    if expired_before is None or all(a.timestamp >= expired_before for a in batch.activities):
        return batch
    keep = [i for i, a in enumerate(batch.activities) if a.timestamp >= expired_before]
    positions = None if batch.positions is None else tuple(batch.positions[i] for i in keep)
    return ReadBatch(tuple(batch.activities[i] for i in keep), batch.unreadable, positions)
