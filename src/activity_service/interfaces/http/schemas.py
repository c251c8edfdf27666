"""The HTTP shapes: request bodies, query parameters and responses, with the examples the docs show.

Types and bounds are checked here (they also document the API); the domain checks its own invariants
again, so nothing that reaches a use case depends on this file being right.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictStr,
    TypeAdapter,
    ValidationError,
)

from activity_service.application.record_activity import ActivityDraft
from activity_service.application.record_batch import BatchResult
from activity_service.domain.activity import MAX_ACTION_LENGTH, MAX_USER_ID_LENGTH
from activity_service.domain.errors import FieldError
from activity_service.domain.ids import EVENT_ID_PATTERN, MAX_EVENT_ID_LENGTH
from activity_service.domain.query import DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, ActivityQuery

MAX_PAGE = 1_000_000


def _iso_string(value: object) -> object:
    """Times come as ISO-8601 strings only; a bare number is ambiguous (seconds? milliseconds?)."""
    if not isinstance(value, str):
        raise ValueError("must be an ISO-8601 date-time string, e.g. 2026-11-26T10:00:00Z")
    return value


def _date_or_datetime(value: object) -> datetime | date:
    """A bare ``YYYY-MM-DD`` is a date (a whole day); anything else must be an ISO-8601 date-time."""
    if isinstance(value, str):
        try:
            return date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError("must be an ISO-8601 date (2026-11-26) or date-time (2026-11-26T10:00:00Z)")


IsoDateTime = Annotated[datetime, BeforeValidator(_iso_string)]
IsoDateOrDateTime = Annotated[datetime | date, PlainValidator(_date_or_datetime, json_schema_input_type=str)]

EXAMPLE_ID = "01936a8e-5f7c-7d3e-9a1b-2c4d6e8f0a1b"


class ActivityIn(BaseModel):
    """One activity as a client sends it. Unknown fields are refused, so a client can never set
    ``receivedAt``, ``ipAddress`` or any field the server owns."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "userId": "user-42",
                    "action": "page_view",
                    "timestamp": "2026-11-26T10:00:00.000Z",
                    "metadata": {"path": "/pricing", "referrer": "newsletter"},
                }
            ]
        },
    )

    userId: StrictStr = Field(min_length=1, max_length=MAX_USER_ID_LENGTH, description="Who did it.")
    action: StrictStr = Field(min_length=1, max_length=MAX_ACTION_LENGTH, description="What they did.")
    timestamp: IsoDateTime | None = Field(
        default=None, description="When it happened (ISO-8601; no offset means UTC). Default: time received."
    )
    sentAt: IsoDateTime | None = Field(
        default=None,
        description="When the client sent it, by the client's clock. With `timestamp`, the stored time is "
        "corrected for the client's clock skew: `receivedAt - (sentAt - timestamp)`.",
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="Any JSON object. Keys may not start with `$` or contain `.` or NUL, at any depth.",
    )
    id: StrictStr | None = Field(
        default=None,
        max_length=MAX_EVENT_ID_LENGTH,
        pattern=EVENT_ID_PATTERN.pattern,
        description="Client-chosen event id. Sending the same id again stores nothing new (idempotency).",
    )

    def to_draft(self, ip_address: str | None, event_id: str | None = None) -> ActivityDraft:
        return ActivityDraft(
            user_id=self.userId,
            action=self.action,
            timestamp=self.timestamp,
            sent_at=self.sentAt,
            metadata=self.metadata,
            id=event_id if event_id is not None else self.id,
            ip_address=ip_address,
        )


class BatchIn(BaseModel):
    """Items are checked one by one, so one bad item does not sink the batch."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "activities": [
                        {"userId": "user-42", "action": "login", "id": "client-evt-1"},
                        {"userId": "user-42", "action": "page_view", "metadata": {"path": "/"}},
                    ]
                }
            ]
        },
    )

    activities: list[Any] = Field(
        min_length=1,
        description="Activities shaped as the single endpoint's body (see ActivityIn); at most "
        "INGEST_MAX_BATCH_ITEMS (500) items, INGEST_MAX_EVENT_BYTES (32 KiB) each.",
        json_schema_extra={"items": {"$ref": "#/components/schemas/ActivityIn"}},
    )


_ITEM = TypeAdapter(ActivityIn)


def parse_item(raw: object, ip_address: str | None, max_bytes: int) -> ActivityDraft | list[FieldError]:
    """One batch item as a draft, or the errors that make it unusable."""
    size = len(orjson.dumps(raw))
    if size > max_bytes:
        return [FieldError("", f"is {size} bytes; an activity may be at most {max_bytes} bytes")]
    try:
        return _ITEM.validate_python(raw).to_draft(ip_address)
    except ValidationError as exc:
        return field_errors(exc.errors())


def field_errors(raw: Sequence[Any]) -> list[FieldError]:
    """Pydantic's errors as ``{field, message}``, the field a dotted path without the ``body``/``query``
    prefix (``metadata.a``, ``activities[3].userId``)."""
    errors = []
    for error in raw:
        location = [p for p in error.get("loc", ()) if p not in ("body", "query", "path", "header")]
        path = ""
        for part in location:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        message = str(error.get("msg", "is invalid"))
        if error.get("type") == "extra_forbidden":
            message = "is not a known field"
        errors.append(FieldError(path or "body", message))
    return errors


class Accepted(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"id": EXAMPLE_ID, "status": "accepted"}]})

    id: str
    status: Literal["accepted"] = "accepted"


class FieldProblem(BaseModel):
    field: str
    message: str


class ItemOutcome(BaseModel):
    index: int = Field(description="Position of the item in the request.")
    status: Literal["accepted", "rejected"]
    id: str | None = Field(default=None, description="Event id, when accepted.")
    errors: list[FieldProblem] | None = Field(default=None, description="Why, when rejected.")


class BatchAccepted(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "accepted": 1,
                    "rejected": 1,
                    "results": [
                        {"index": 0, "status": "accepted", "id": EXAMPLE_ID},
                        {
                            "index": 1,
                            "status": "rejected",
                            "errors": [{"field": "userId", "message": "Field required"}],
                        },
                    ],
                }
            ]
        }
    )

    accepted: int
    rejected: int
    results: list[ItemOutcome]


def batch_body(result: BatchResult) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    for item in result.items:
        if item.activity is not None:
            results.append({"index": item.index, "status": "accepted", "id": item.activity.id})
        else:
            errors = [{"field": e.field, "message": e.message} for e in item.errors]
            results.append({"index": item.index, "status": "rejected", "errors": errors})
    return {"accepted": result.accepted, "rejected": result.rejected, "results": results}


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


class Problem(BaseModel):
    """RFC 9457 problem details (`application/problem+json`)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldProblem] | None = None


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    service: str = "activity-service"


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str] = Field(description="`ok`, or why the dependency failed.")
