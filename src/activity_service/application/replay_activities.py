"""Replay: store again what the event log holds. Safe any number of times, since writes are idempotent."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from activity_service.application.erase_users import ErasedUsers
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
    erased: int = 0

    def summary(self) -> str:
        return (
            f"{self.read} events read: {self.inserted} stored, {self.duplicates} already stored, "
            f"{len(self.rejected)} refused by the database, {len(self.unreadable)} unreadable, "
            f"{self.expired} past retention, {self.erased} erased"
        )


class ReplayActivities:
    """Re-persist every event the batches carry.

    Events already stored count as duplicates and change nothing; events the store refuses and messages
    that cannot be read are reported, never dropped silently (they stay on their topic). Events older
    than retention keeps (``expired_before``) are not stored again: retention removed them on purpose;
    nor are events an erasure covers. With ``forget_dead_letters`` (a dead-letter replay) the dead-letter
    records of events now stored (or erased) are removed, so their status reads "persisted" (or unknown).
    """

    def __init__(
        self, repository: ActivityRepository, dead_letters: DeadLetterLog, erased: ErasedUsers
    ) -> None:
        self._repository = repository
        self._dead_letters = dead_letters
        self._erased = erased

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
            unexpired = [
                i
                for i, a in enumerate(read.activities)
                if expired_before is None or a.timestamp >= expired_before
            ]
            batch = _only(read, unexpired)
            report.expired += len(read.activities) - len(batch.activities)
            unerased = await self._erased.not_erased(batch.activities)
            kept = set(unerased)
            erased = [a.key for i, a in enumerate(batch.activities) if i not in kept]
            batch = _only(batch, unerased)
            report.erased += len(erased)
            if forget_dead_letters and erased:
                await self._dead_letters.forget(erased)
            if batch.activities:
                outcome = await self._repository.add_many(batch.activities, batch.positions)
                await self._erased.after_storing(batch.activities)
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


def _only(batch: ReadBatch, keep: Sequence[int]) -> ReadBatch:
    """The batch with only the activities at the indexes ``keep`` (in order)."""
    if len(keep) == len(batch.activities):
        return batch
    positions = None if batch.positions is None else tuple(batch.positions[i] for i in keep)
    return ReadBatch(tuple(batch.activities[i] for i in keep), batch.unreadable, positions)
