"""Shapes of the ingest endpoints: one activity, a batch, and their answers.

Types and bounds are checked here (they also document the API); the domain checks its own invariants
again, so nothing that reaches a use case depends on this file being right.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictStr, TypeAdapter, ValidationError

from activity_service.application.record_activity import ActivityDraft
from activity_service.application.record_batch import BatchResult
from activity_service.domain.activity import MAX_ACTION_LENGTH, MAX_USER_ID_LENGTH
from activity_service.domain.errors import FieldError
from activity_service.domain.ids import EVENT_ID_PATTERN, MAX_EVENT_ID_LENGTH
from activity_service.interfaces.http.callers import Sender
from activity_service.interfaces.http.schemas.common import (
    EXAMPLE_ID,
    FieldProblem,
    IsoDateTime,
    field_errors,
)


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
        description="Client-chosen event id, unique within the key's tenant. The same event sent again "
        "with it stores nothing new (idempotency); other content under it is a conflict, never stored.",
    )

    def to_draft(self, sender: Sender, event_id: str | None = None) -> ActivityDraft:
        return ActivityDraft(
            user_id=self.userId,
            action=self.action,
            timestamp=self.timestamp,
            sent_at=self.sentAt,
            metadata=self.metadata,
            id=event_id if event_id is not None else self.id,
            ip_address=sender.ip_address,
            trace_id=sender.trace_id,
            tenant=sender.tenant,
            source=sender.source,
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


def parse_item(raw: object, sender: Sender, max_bytes: int) -> ActivityDraft | list[FieldError]:
    """One batch item as a draft, or the errors that make it unusable."""
    try:
        size = len(orjson.dumps(raw))
    except TypeError:  # orjson refuses integers beyond 64 bits
        return [FieldError("", "integers must fit in 64 bits")]
    if size > max_bytes:
        return [FieldError("", f"is {size} bytes; an activity may be at most {max_bytes} bytes")]
    try:
        return _ITEM.validate_python(raw).to_draft(sender)
    except ValidationError as exc:
        return field_errors(exc.errors())


class Accepted(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"id": EXAMPLE_ID, "status": "accepted"}]})

    id: str
    status: Literal["accepted"] = "accepted"


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
    """A batch's outcome as BatchAccepted shows it, every field of every item present (a 202's and a
    400's ``results`` alike), so that it is encoded as it is, with no model in between."""
    results: list[dict[str, Any]] = []
    for item in result.items:
        if item.activity is not None:
            accepted = {"index": item.index, "status": "accepted", "id": item.activity.id, "errors": None}
            results.append(accepted)
        else:
            errors = [{"field": e.field, "message": e.message} for e in item.errors]
            results.append({"index": item.index, "status": "rejected", "id": None, "errors": errors})
    return {"accepted": result.accepted, "rejected": result.rejected, "results": results}
