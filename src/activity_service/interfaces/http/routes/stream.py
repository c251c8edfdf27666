"""/api/activities/stream: the live tail, as Server-Sent Events (interfaces/http/stream.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from activity_service.domain.activity import MAX_ACTION_LENGTH, MAX_USER_ID_LENGTH
from activity_service.domain.feed import FeedFilter
from activity_service.interfaces.http.callers import shows_addresses, tenant_of
from activity_service.interfaces.http.dependencies import Services, given_once
from activity_service.interfaces.http.problems import problem
from activity_service.interfaces.http.routes.activities import GATE_RESPONSES, PROBLEM
from activity_service.interfaces.http.stream import EventStream, Streams, decode_cursor

# Included before the activities router: "/stream" must not be read as an activity id.
router = APIRouter(prefix="/api/activities", tags=["activities"], responses=GATE_RESPONSES)
# One event as a client's parser sees it (OpenAPI 3.0/3.1 have no itemSchema: tools take this schema
# per event). `data` is JSON: {} for ready, the list's item for accepted, {"detail"} for overflow.
EVENT = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["ready", "accepted", "overflow"]},
        "id": {"type": "string", "description": "Send it back as Last-Event-ID to resume after this event."},
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
}


class StreamParams(BaseModel):
    """As the list's filters. Unknown parameters are refused."""

    model_config = ConfigDict(extra="forbid")

    userId: StrictStr | None = Field(default=None, min_length=1, max_length=MAX_USER_ID_LENGTH)
    action: list[Annotated[str, Field(min_length=1, max_length=MAX_ACTION_LENGTH)]] = Field(
        default_factory=list, max_length=20, description="Repeat to follow any of several actions."
    )


@router.get(
    "/stream",
    summary="Live tail (Server-Sent Events)",
    status_code=200,
    response_class=EventStream,
    responses={
        200: {
            "description": "`text/event-stream`: `event: ready` (with the id to resume from), then one "
            "`event: accepted` per activity, `data:` in the list's item shape; `: heartbeat` comments; a "
            "final `event: overflow` when the client fell too far behind.",
            "content": {"text/event-stream": {"schema": EVENT}},
        },
        400: {**PROBLEM, "description": "A filter or the Last-Event-ID is not valid."},
        503: {
            **PROBLEM,
            "description": "Too many open streams, or the event log cannot be read; see Retry-After.",
        },
    },
    dependencies=[Depends(given_once(StreamParams))],
)
async def stream_activities(
    params: Annotated[StreamParams, Query()],
    request: Request,
    services: Services,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="Resume after this event (an `id` the stream sent): no gap, no repeat.",
        ),
    ] = None,
) -> Any:
    """Activities as Kafka accepts them, within a second of their 202 and before they are stored (so
    they are marked `accepted`), filtered like the list. Read it with EventSource or fetch(); send
    `Last-Event-ID` to resume. A client that cannot keep up is sent `event: overflow` and closed."""
    streams: Streams = request.app.state.streams
    if streams.open >= streams.max_clients:
        return problem(
            503,
            f"At most {streams.max_clients} streams are open at once; retry later.",
            headers={"Retry-After": "5"},
        )
    resume = decode_cursor(last_event_id) if last_event_id else None
    only = FeedFilter(params.userId, tuple(params.action), tenant=tenant_of(request))
    batches = services.follow_activities.execute(only, resume)
    first = await anext(aiter(batches))  # where it starts: fails here (503) when the log cannot be read
    return EventStream(first, batches, streams, addresses=shows_addresses(request))
