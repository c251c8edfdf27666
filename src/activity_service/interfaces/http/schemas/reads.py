"""Shapes of the read endpoints: query parameters, one activity, a page of them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from activity_service.application.get_event_status import EventStatus
from activity_service.application.list_activities import Listing
from activity_service.domain.activity import MAX_ACTION_LENGTH, MAX_USER_ID_LENGTH, Activity
from activity_service.domain.errors import FieldError
from activity_service.domain.query import DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, ActivityQuery, InvalidQuery
from activity_service.domain.times import to_iso
from activity_service.interfaces.http.cursor import decode_cursor, encode_cursor
from activity_service.interfaces.http.schemas.common import EXAMPLE_ID, IsoDateOrDateTime

MAX_PAGE = 1_000_000


class ActivityOut(BaseModel):
    id: str
    userId: str
    action: str
    timestamp: str = Field(description="Effective event time, ISO-8601 UTC.")
    metadata: dict[str, Any]
    ipAddress: str | None = Field(
        description="The client's address as IP_ADDRESS_MODE kept it; null when none was kept, and for keys "
        "without activities:read-pii when PII_READ_SCOPE_REQUIRED=true."
    )
    receivedAt: str = Field(description="When the API received it, ISO-8601 UTC.")
    originalTimestamp: str | None = Field(
        default=None, description="The client's own `timestamp`, present when it was corrected with `sentAt`."
    )
    sentAt: str | None = None
    traceId: str | None = Field(
        default=None, description="Trace id of the request that carried it, when tracing was on."
    )
    source: str | None = Field(default=None, description="The name of the API key that sent it.")


def activity_out(activity: Activity, *, addresses: bool = True) -> dict[str, Any]:
    """An activity as the read endpoints answer it (ActivityOut): times ISO-8601 UTC with milliseconds,
    the optional fields only when they hold something; ``ipAddress`` null unless ``addresses``."""
    out: dict[str, Any] = {
        "id": activity.id,
        "userId": activity.user_id,
        "action": activity.action,
        "timestamp": to_iso(activity.timestamp),
        "metadata": activity.metadata,
        "ipAddress": activity.ip_address if addresses else None,
        "receivedAt": to_iso(activity.received_at),
    }
    if activity.original_timestamp is not None:
        out["originalTimestamp"] = to_iso(activity.original_timestamp)
    if activity.sent_at is not None:
        out["sentAt"] = to_iso(activity.sent_at)
    if activity.trace_id is not None:
        out["traceId"] = activity.trace_id
    if activity.source is not None:
        out["source"] = activity.source
    return out


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
                    "totalCapped": False,
                    "page": 1,
                    "limit": 10,
                    "totalPages": 1,
                    "nextCursor": None,
                    "freshUntil": "2026-11-26T10:00:01.000Z",
                },
                {
                    "data": [],
                    "limit": 10,
                    "nextCursor": "eyJ0IjoiMjAyNi0xMS0yNlQxMDowMDowMC4wMDBaIiwiaSI6ImUxIiwiZiI6IjAifQ",
                    "freshUntil": "2026-11-26T10:00:01.000Z",
                },
            ]
        }
    )

    data: list[ActivityOut]
    total: int | None = Field(
        default=None,
        description="Matches in all, counted up to QUERY_MAX_COUNT (10,000 by default; see totalCapped). "
        "Page mode: always. Cursor mode: only with includeTotal=true.",
    )
    totalCapped: bool | None = Field(
        default=None,
        description="Present with `total`: true when counting stopped at QUERY_MAX_COUNT, so that there "
        "are at least `total` matches (and `totalPages` counts only those); false when `total` is exact.",
    )
    page: int | None = Field(default=None, description="Page mode only.")
    limit: int
    totalPages: int | None = Field(default=None, description="Page mode only.")
    nextCursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")
    freshUntil: str | None = Field(
        description="Every event received before this time is stored (ISO-8601 UTC); null while unknown. "
        "Also in the X-Data-Fresh-Until header."
    )


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
    page: int | None = Field(
        default=None, ge=1, le=MAX_PAGE, description="Page mode (the default): page number, from 1."
    )
    limit: int = Field(default=DEFAULT_PAGE_LIMIT, ge=1, le=MAX_PAGE_LIMIT)
    cursor: str | None = Field(
        default=None,
        max_length=1024,
        description="Cursor mode: the `nextCursor` of the previous page, or empty to start a walk. Each "
        "page is one index range, however deep; events arriving meanwhile never shift it.",
    )
    includeTotal: bool = Field(default=False, description="Cursor mode: also count all matches.")

    @property
    def cursor_mode(self) -> bool:
        return self.cursor is not None

    def to_query(self, tenant: str) -> ActivityQuery:
        """The tenant's activities these parameters ask for. Raises InvalidQuery when the bounds are
        crossed or the cursor does not fit these filters (and this tenant)."""
        query = ActivityQuery(
            tenant=tenant,
            user_id=self.userId,
            actions=tuple(self.action),
            start=bound(self.startDate, first=True),
            end=bound(self.endDate, first=False),
            page=self.page or 1,
            limit=self.limit,
            count_total=not self.cursor_mode or self.includeTotal,
        )
        if self.cursor_mode and self.page is not None:
            raise InvalidQuery([FieldError("page", "cannot be combined with a cursor")])
        if self.cursor:
            return replace(query, after=decode_cursor(self.cursor, query.fingerprint))
        return query


def bound(value: datetime | date | None, *, first: bool) -> datetime | None:
    """A bare date stands for its first (or last) millisecond, UTC, so both bounds stay inclusive."""
    if value is None or isinstance(value, datetime):
        return None if value is None else (value if value.tzinfo else value.replace(tzinfo=UTC))
    moment = time.min if first else time(23, 59, 59, 999_000)
    return datetime.combine(value, moment, tzinfo=UTC)


class EventStatusOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"id": EXAMPLE_ID, "status": "pending", "freshUntil": "2026-11-26T10:00:01.000Z"}]
        }
    )

    id: str
    status: EventStatus = Field(
        description="`persisted`: stored. `conflict`: the id came again with other content, which was not "
        "stored (it is on the dead-letter topic; the first content stays). `dead_lettered`: set aside as "
        "unstorable (see the DLQ). `pending`: accepted and newer than what the consumer has stored so far. "
        "`unknown`: never accepted, another tenant's, erased, or a client-chosen id older than the stored "
        "data."
    )
    freshUntil: str | None


def listing_body(
    listing: Listing, query: ActivityQuery, *, cursor_mode: bool, addresses: bool = True
) -> dict[str, Any]:
    """The list answer: page mode keeps the original `{data, total, page, totalPages}`; cursor mode
    leaves out the page fields, and the total unless asked for."""
    page = listing.page
    body: dict[str, Any] = {
        "data": [activity_out(a, addresses=addresses) for a in page.items],
        "limit": page.limit,
        "nextCursor": None,
        "freshUntil": None if listing.fresh_until is None else to_iso(listing.fresh_until),
    }
    position = page.next_position
    if position is not None:
        body["nextCursor"] = encode_cursor(position, query.fingerprint)
    if page.total is not None:
        body["total"] = page.total
        body["totalCapped"] = page.total_capped
    if not cursor_mode:
        body["page"] = page.page
        body["totalPages"] = page.total_pages
    return body
