"""How activities are looked up: filters, two ways to paginate, and one page of results."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from activity_service.domain.activity import DEFAULT_TENANT, Activity
from activity_service.domain.errors import FieldError, InvalidActivity

DEFAULT_PAGE_LIMIT = 10
MAX_PAGE_LIMIT = 100


class InvalidQuery(InvalidActivity):
    """A query that cannot be answered as asked (bad page, limit or date range)."""


@dataclass(frozen=True, slots=True)
class Position:
    """Where a keyset walk stands: the sort key of the last activity returned."""

    timestamp: datetime
    id: str


@dataclass(frozen=True, slots=True)
class ActivityQuery:
    """Filters are exact matches; ``start``/``end`` bound ``timestamp`` inclusively.

    Results are ordered newest ``timestamp`` first, then by id (descending), so the order is total and
    stable. Two ways to page: by number (``page``; skips ``(page - 1) * limit`` rows, so deep pages cost
    more and shift when events arrive) or by keyset (``after``: the activities strictly after that
    position in the order, one index range however deep). ``count_total`` asks for the number of matches;
    ``count_limit`` bounds that count (a store counts at most that many, and says so: ``total_capped``).
    """

    user_id: str | None = None
    actions: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    tenant: str = DEFAULT_TENANT
    """Whose events: a query only ever sees one tenant's."""
    page: int = 1
    limit: int = DEFAULT_PAGE_LIMIT
    after: Position | None = None
    count_total: bool = True
    count_limit: int | None = None

    def __post_init__(self) -> None:
        errors: list[FieldError] = []
        if self.page < 1:
            errors.append(FieldError("page", "must be at least 1"))
        if self.after is not None and self.page != 1:
            errors.append(FieldError("page", "cannot be combined with a cursor"))
        if not 1 <= self.limit <= MAX_PAGE_LIMIT:
            errors.append(FieldError("limit", f"must be between 1 and {MAX_PAGE_LIMIT}"))
        if self.start is not None and self.end is not None and self.start > self.end:
            errors.append(FieldError("startDate", "must not be after endDate"))
        if errors:
            raise InvalidQuery(errors)

    @property
    def skip(self) -> int:
        return (self.page - 1) * self.limit

    @property
    def fingerprint(self) -> str:
        """Identifies the filters (not the position), so a cursor cannot be reused with other filters."""
        parts = [
            self.tenant,
            self.user_id or "",
            ",".join(sorted(self.actions)),
            self.start.isoformat() if self.start else "",
            self.end.isoformat() if self.end else "",
        ]
        return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class ActivityPage:
    items: Sequence[Activity]
    total: int | None
    page: int
    limit: int
    has_more: bool
    total_capped: bool = False
    """``total`` stopped at the query's ``count_limit``: there are at least that many matches."""

    @property
    def total_pages(self) -> int | None:
        if self.total is None:
            return None
        return math.ceil(self.total / self.limit) if self.total else 0

    @property
    def next_position(self) -> Position | None:
        """Where the next page starts, or None on the last page."""
        if not self.has_more or not self.items:
            return None
        last = self.items[-1]
        return Position(last.timestamp, last.id)
