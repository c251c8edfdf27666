"""Record a batch of activities: every valid item is accepted, every invalid one says why."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC

from activity_service.application.record_activity import ActivityDraft
from activity_service.application.resends import RecentContent
from activity_service.domain.activity import Activity
from activity_service.domain.errors import DomainError, FieldError, InvalidActivity
from activity_service.domain.ports import Clock, EventPublisher, IdGenerator
from activity_service.domain.times import to_millis


@dataclass(frozen=True, slots=True)
class ItemResult:
    index: int
    activity: Activity | None = None
    errors: tuple[FieldError, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.activity is not None


@dataclass(frozen=True, slots=True)
class BatchResult:
    items: tuple[ItemResult, ...]

    @property
    def accepted(self) -> int:
        return sum(1 for r in self.items if r.accepted)

    @property
    def rejected(self) -> int:
        return len(self.items) - self.accepted


class InvalidBatch(DomainError):
    """No item of the batch is valid; ``result`` says what is wrong with each."""

    def __init__(self, result: BatchResult) -> None:
        self.result = result
        super().__init__(f"none of the {len(result.items)} activities is valid")


class BatchTooLarge(DomainError):
    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"a batch may hold at most {limit} activities; this one holds {size}")


BatchItem = ActivityDraft | Sequence[FieldError]


CONFLICT = "was sent before with other content: a resend must repeat it, a new event needs a new id"


class RecordBatch:
    """Accept the valid items of a batch, report the others, in input order (a client-chosen id sent
    before with other content is such an item: see RecordActivity).

    An item arrives either as a draft or as the errors the boundary already found in it. All valid
    items are published together and accepted only once the log acknowledged every one of them; if it
    does not in time, none is reported accepted (retrying with the same ids is safe). A batch with no
    valid item raises InvalidBatch, one of more than ``max_items`` items BatchTooLarge. All items share
    one ``receivedAt``.
    """

    def __init__(
        self,
        publisher: EventPublisher,
        clock: Clock,
        ids: IdGenerator,
        *,
        max_items: int,
        recent: RecentContent | None = None,
    ) -> None:
        self._publisher = publisher
        self._clock = clock
        self._ids = ids
        self._max_items = max_items
        self._recent = recent if recent is not None else RecentContent()

    async def execute(self, items: Sequence[BatchItem]) -> BatchResult:
        if len(items) > self._max_items:
            raise BatchTooLarge(len(items), self._max_items)
        received_at = to_millis(self._clock.now().astimezone(UTC))  # as stored: shared as it is
        results = []
        chosen: dict[tuple[str, str], str] = {}  # this batch's client-chosen ids: a repeat must match
        for index, item in enumerate(items):
            if not isinstance(item, ActivityDraft):
                results.append(ItemResult(index, errors=tuple(item)))
                continue
            try:
                activity = item.to_activity(self._ids, received_at)
            except InvalidActivity as exc:
                results.append(ItemResult(index, errors=exc.errors))
                continue
            earlier = None if activity.fingerprint is None else chosen.get((activity.tenant, activity.id))
            if earlier not in (None, activity.fingerprint) or await self._recent.conflicts(activity):
                results.append(ItemResult(index, errors=(FieldError("id", CONFLICT),)))
            else:
                results.append(ItemResult(index, activity=activity))
                if activity.fingerprint is not None:
                    chosen.setdefault((activity.tenant, activity.id), activity.fingerprint)
        result = BatchResult(tuple(results))
        valid = [r.activity for r in results if r.activity is not None]
        if not valid:
            raise InvalidBatch(result)
        await self._publisher.publish(valid)
        self._recent.remember(valid)
        return result
