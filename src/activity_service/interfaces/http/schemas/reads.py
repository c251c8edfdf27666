"""Shapes of the read endpoints: query parameters, one activity, a page of them."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from activity_service.domain.activity import MAX_ACTION_LENGTH, MAX_USER_ID_LENGTH
from activity_service.domain.query import DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, ActivityQuery
from activity_service.interfaces.http.schemas.common import EXAMPLE_ID, IsoDateOrDateTime

MAX_PAGE = 1_000_000


class ActivityOut(BaseModel):
    id: str
    userId: str
    action: str
    timestamp: str = Field(description="Effective event time, ISO-8601 UTC.")
    metadata: dict[str, Any]
    ipAddress: str | None
    receivedAt: str = Field(description="When the API received it, ISO-8601 UTC.")
    originalTimestamp: str | None = Field(
        default=None, description="The client's own `timestamp`, present when it was corrected with `sentAt`."
    )
    sentAt: str | None = None


class ActivityList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "data": [
                        {
                            "id": EXAMPLE_ID,
                            "userId": "user-42",
                            "action": "page_view",
                            "timestamp": "2026-11-26T10:00:00.000Z",
                            "metadata": {"path": "/pricing"},
                            "ipAddress": "203.0.113.7",
                            "receivedAt": "2026-11-26T10:00:00.120Z",
                        }
                    ],
                    "total": 1,
                    "page": 1,
                    "limit": 10,
                    "totalPages": 1,
                }
            ]
        }
    )

    data: list[ActivityOut]
    total: int
    page: int
    limit: int
    totalPages: int


class ListParams(BaseModel):
    """Filters combine with AND. Unknown parameters are refused (so is `userId[$ne]=...`)."""

    model_config = ConfigDict(extra="forbid")

    userId: StrictStr | None = Field(default=None, min_length=1, max_length=MAX_USER_ID_LENGTH)
    action: list[Annotated[str, Field(min_length=1, max_length=MAX_ACTION_LENGTH)]] = Field(
        default_factory=list, max_length=20, description="Repeat to match any of several actions."
    )
    startDate: IsoDateOrDateTime | None = Field(
        default=None, description="Inclusive lower bound on `timestamp`; a bare date means its first instant."
    )
    endDate: IsoDateOrDateTime | None = Field(
        default=None, description="Inclusive upper bound on `timestamp`; a bare date means its last instant."
    )
    page: int = Field(default=1, ge=1, le=MAX_PAGE)
    limit: int = Field(default=DEFAULT_PAGE_LIMIT, ge=1, le=MAX_PAGE_LIMIT)

    def to_query(self) -> ActivityQuery:
        """Raises InvalidQuery when the bounds are crossed."""
        return ActivityQuery(
            user_id=self.userId,
            actions=tuple(self.action),
            start=_bound(self.startDate, first=True),
            end=_bound(self.endDate, first=False),
            page=self.page,
            limit=self.limit,
        )


def _bound(value: datetime | date | None, *, first: bool) -> datetime | None:
    """A bare date stands for its first (or last) millisecond, UTC, so both bounds stay inclusive."""
    if value is None or isinstance(value, datetime):
        return None if value is None else (value if value.tzinfo else value.replace(tzinfo=UTC))
    moment = time.min if first else time(23, 59, 59, 999_000)
    return datetime.combine(value, moment, tzinfo=UTC)
