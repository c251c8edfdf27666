"""Counts over time: how many activities each interval of time holds, for dashboards to draw."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol

from activity_service.domain.activity import DEFAULT_TENANT
from activity_service.domain.errors import FieldError
from activity_service.domain.query import InvalidQuery

MAX_BUCKETS = 1000


class Interval(StrEnum):
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"

    @property
    def length(self) -> timedelta:
        return _LENGTHS[self]

    def floor(self, moment: datetime) -> datetime:
        """The start of the UTC bucket holding ``moment``."""
        utc = moment.astimezone(UTC)
        if self is Interval.MINUTE:
            return utc.replace(second=0, microsecond=0)
        if self is Interval.HOUR:
            return utc.replace(minute=0, second=0, microsecond=0)
        return utc.replace(hour=0, minute=0, second=0, microsecond=0)


_LENGTHS = {
    Interval.MINUTE: timedelta(minutes=1),
    Interval.HOUR: timedelta(hours=1),
    Interval.DAY: timedelta(days=1),
}


@dataclass(frozen=True, slots=True)
class CountQuery:
    """Counts per ``interval`` bucket (UTC) from the bucket holding ``start`` to the one holding ``end``,
    each bucket counting its whole interval; at most MAX_BUCKETS of them. Filters are exact matches;
    ``by_action`` splits each bucket's total by action."""

    interval: Interval
    start: datetime
    end: datetime
    user_id: str | None = None
    actions: tuple[str, ...] = ()
    by_action: bool = False
    tenant: str = DEFAULT_TENANT
    """Whose events are counted: one tenant's only."""

    def __post_init__(self) -> None:
        if self.start > self.end:
            raise InvalidQuery([FieldError("startDate", "must not be after endDate")])
        if self.interval.floor(self.end) > datetime.max.replace(tzinfo=UTC) - self.interval.length:
            raise InvalidQuery([FieldError("endDate", "its bucket would end after the year 9999")])
        count = (self.interval.floor(self.end) - self.interval.floor(self.start)) // self.interval.length + 1
        if count > MAX_BUCKETS:
            raise InvalidQuery(
                [
                    FieldError(
                        "interval",
                        f"{count} {self.interval.value} buckets from startDate to endDate; at most "
                        f"{MAX_BUCKETS} are answered at once: choose a longer interval or a shorter range",
                    )
                ]
            )

    @property
    def first(self) -> datetime:
        return self.interval.floor(self.start)

    @property
    def after_last(self) -> datetime:
        """Where the last bucket ends (exclusive)."""
        return self.interval.floor(self.end) + self.interval.length

    def bucket_starts(self) -> list[datetime]:
        starts, moment = [], self.first
        while moment < self.after_last:
            starts.append(moment)
            moment += self.interval.length
        return starts


@dataclass(frozen=True, slots=True)
class BucketCount:
    start: datetime
    total: int
    by_action: Mapping[str, int] = field(default_factory=dict)


class ActivityCounts(Protocol):
    async def count(self, query: CountQuery) -> Sequence[BucketCount]:
        """The buckets of ``query`` that hold at least one matching activity, exactly counted (a store
        keeps its counts up to date as it stores and removes events). Empty buckets may be left out."""
        ...
