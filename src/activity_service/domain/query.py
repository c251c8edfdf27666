"""How activities are looked up: filters, pagination and one page of results."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from activity_service.domain.activity import Activity
from activity_service.domain.errors import FieldError, InvalidActivity

DEFAULT_PAGE_LIMIT = 10
MAX_PAGE_LIMIT = 100


class InvalidQuery(InvalidActivity):
    """A query that cannot be answered as asked (bad page, limit or date range)."""


@dataclass(frozen=True, slots=True)
class ActivityQuery:
    """Filters are exact matches; ``start``/``end`` bound ``timestamp`` inclusively.

    Results are ordered newest ``timestamp`` first, then by id (descending), so the order is total and
    stable from one page to the next.
    """

    user_id: str | None = None
    actions: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    page: int = 1
    limit: int = DEFAULT_PAGE_LIMIT

    def __post_init__(self) -> None:
        errors: list[FieldError] = []
        if self.page < 1:
            errors.append(FieldError("page", "must be at least 1"))
        if not 1 <= self.limit <= MAX_PAGE_LIMIT:
            errors.append(FieldError("limit", f"must be between 1 and {MAX_PAGE_LIMIT}"))
        if self.start is not None and self.end is not None and self.start > self.end:
            errors.append(FieldError("startDate", "must not be after endDate"))
        if errors:
            raise InvalidQuery(errors)

    @property
    def skip(self) -> int:
        return (self.page - 1) * self.limit


@dataclass(frozen=True, slots=True)
class ActivityPage:
    items: Sequence[Activity]
    total: int
    page: int
    limit: int

    @property
    def total_pages(self) -> int:
        return math.ceil(self.total / self.limit) if self.total else 0
