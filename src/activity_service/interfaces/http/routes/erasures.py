"""Erasure: forget a user (DELETE /api/users/{userId}/activities) and follow it (GET /api/erasures/{id}).

Both need the scope activities:erase (the ApiGate: security/auth.py required_scope) and see only the
key's tenant.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.convertors import Convertor, register_url_convertor

from activity_service.domain.activity import MAX_USER_ID_LENGTH
from activity_service.domain.erasure import Erasure
from activity_service.domain.ids import EVENT_ID_PATTERN, MAX_EVENT_ID_LENGTH
from activity_service.domain.times import to_iso
from activity_service.interfaces.http.callers import tenant_of
from activity_service.interfaces.http.dependencies import Services
from activity_service.interfaces.http.route_table import public_path
from activity_service.interfaces.http.routes.activities import GATE_RESPONSES, PROBLEM, UNAVAILABLE

router = APIRouter(prefix="/api", tags=["erasure"], responses=GATE_RESPONSES)

Status = Literal["pending", "running", "done"]


class ErasureRequested(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"erasureId": "0193b8f2-8c1e-7d3a-9f00-2b6c4e1a7d55", "status": "pending"}]
        }
    )

    erasureId: str
    status: Status


class ErasureOut(BaseModel):
    erasureId: str
    userId: str
    status: Status = Field(
        description="`pending` until a consumer starts on it, `running`, then `done`: every covered event "
        "that was stored is removed (covered events that arrive later are never stored)."
    )
    removed: int = Field(description="Stored events removed so far.")
    requestedAt: str = Field(
        description="Events of the user received before this time (ISO-8601 UTC) are erased; later ones kept."
    )
    finishedAt: str | None


class _AnyText(Convertor[str]):
    """Starlette's ``path`` convertor, newlines included: its ``.*`` stops at one, so a userId holding a
    line feed (%0A) matched no route and was a bare 404; it now meets the route's own checks."""

    regex = "(?s:.*)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("text", _AnyText())


@router.delete(
    "/users/{userId:text}/activities",  # a userId may hold "/" (sent as %2F), and any character
    status_code=202,
    response_model=ErasureRequested,
    summary="Erase a user's activities",
    responses={503: UNAVAILABLE},
)
async def erase_user(
    # No event can hold U+0000 in its userId (ingest refuses control characters, PostgreSQL cannot store it).
    userId: Annotated[str, Path(min_length=1, max_length=MAX_USER_ID_LENGTH, pattern="^[^\\x00]+$")],
    request: Request,
    response: Response,
    services: Services,
) -> dict[str, Any]:
    """Forget the user in the key's tenant: every event of theirs **received before now** is removed from
    the store, with its counts and dead-letter records, and is never stored again, wherever it comes from
    later (the consumer's backlog, a redelivery, `replay`, `dlq replay`). Events received after the
    request are kept. A consumer carries it out; follow it at `Location` (GET /api/erasures/{id}). A user
    with no events is erased all the same (0 removed). Kafka keeps its copies until its retention."""
    erasure = await services.request_erasure.execute(tenant_of(request), userId)
    response.headers["Location"] = public_path(request.scope, f"/api/erasures/{erasure.id}")
    return {"erasureId": erasure.id, "status": erasure.status.value}


@router.get(
    "/erasures/{erasureId}",
    response_model=ErasureOut,
    summary="How an erasure goes",
    responses={404: PROBLEM, 503: UNAVAILABLE},
)
async def get_erasure(
    erasureId: Annotated[str, Path(max_length=MAX_EVENT_ID_LENGTH, pattern=EVENT_ID_PATTERN.pattern)],
    request: Request,
    services: Services,
) -> dict[str, Any]:
    """The key's tenant's erasure; 404 for an unknown id and for another tenant's."""
    return erasure_out(await services.get_erasure.execute(tenant_of(request), erasureId))


def erasure_out(erasure: Erasure) -> dict[str, Any]:
    return {
        "erasureId": erasure.id,
        "userId": erasure.user_id,
        "status": erasure.status.value,
        "removed": erasure.removed,
        "requestedAt": to_iso(erasure.requested_at),
        "finishedAt": None if erasure.finished_at is None else to_iso(erasure.finished_at),
    }
