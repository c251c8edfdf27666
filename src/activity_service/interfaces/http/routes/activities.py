"""/api/activities: record activities and read them back."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from activity_service.bootstrap import ApiServices
from activity_service.domain.errors import FieldError, InvalidActivity
from activity_service.domain.ids import event_id_problem
from activity_service.domain.times import to_iso
from activity_service.interfaces.http.callers import sender_of, shows_addresses, tenant_of
from activity_service.interfaces.http.dependencies import Services, given_once
from activity_service.interfaces.http.observability import rejected_events
from activity_service.interfaces.http.route_table import public_path
from activity_service.interfaces.http.schemas.common import Problem
from activity_service.interfaces.http.schemas.ingest import (
    Accepted,
    ActivityIn,
    BatchAccepted,
    BatchIn,
    batch_body,
    parse_item,
)
from activity_service.interfaces.http.schemas.reads import (
    ActivityList,
    ActivityOut,
    EventStatusOut,
    ListParams,
    activity_out,
    listing_body,
)
from activity_service.interfaces.http.schemas.stats import StatsOut, StatsParams, stats_body
from activity_service.interfaces.http.security.throttle import budget_of
from activity_service.interfaces.http.strict_json import StrictJsonRoute

PROBLEM = {"model": Problem, "content": {"application/problem+json": {}}}
UNAVAILABLE = {**PROBLEM, "description": "The database is unavailable; see Retry-After."}

# Every route here needs a key, activities:read to GET and activities:write to POST, and spends one
# rate-limit token: the ApiGate middleware sees to it before a route runs (security/gate.py).
# What every route under /api may answer before it runs (the ApiGate: security/gate.py).
GATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {
        **PROBLEM,
        "description": "A secret API key sent in the query (`?key=` is for publishable keys only), or a key "
        "sent twice.",
    },
    401: {**PROBLEM, "description": "No API key, or not a valid one (see WWW-Authenticate)."},
    403: {
        **PROBLEM,
        "description": "The API key lacks the scope this needs, or is a publishable key used from another "
        "origin (or without Origin).",
    },
    429: {
        **PROBLEM,
        "description": "Over the client's rate limit (a publishable key's: also its client address's); see "
        "Retry-After and RateLimit.",
    },
}
# The ingest bodies as the IngestGuard takes them (guard.py, bodies.py): compressed or not, and from a
# publishable key also as text/plain (a browser's beacon). Declared here for the document only: the
# guard has read, inflated and checked the body before a route runs.
COMPRESSIBLE = {
    "name": "Content-Encoding",
    "in": "header",
    "required": False,
    "description": "The body may be compressed with `gzip` or `deflate` (zlib or raw). The size limits "
    "count the decompressed body, which may also be at most INGEST_MAX_COMPRESSION_RATIO (100) times "
    "its compressed size (else 413); a stream that does not decompress whole is a 400, another coding "
    "a 415.",
    "schema": {"type": "string", "enum": ["gzip", "x-gzip", "deflate", "identity"]},
}


def ingest_body(schema: str) -> dict[str, Any]:
    """What the OpenAPI document says of an ingest route's body beyond its JSON schema."""
    text = {
        "schema": {"$ref": f"#/components/schemas/{schema}"},
        "description": "The same JSON as text/plain (`navigator.sendBeacon`): only with a publishable key.",
    }
    # A publishable key may also come in the query (security/auth.py adds the header schemes).
    return {
        "parameters": [COMPRESSIBLE],
        "requestBody": {"content": {"text/plain": text}},
        "security": [{"publishableKey": []}],
    }


UNSUPPORTED = {
    **PROBLEM,
    "description": "Body is not JSON (text/plain is JSON only with a publishable key), or its "
    "Content-Encoding is neither gzip nor deflate (see Accept-Encoding).",
}
router = APIRouter(
    prefix="/api/activities",
    tags=["activities"],
    route_class=StrictJsonRoute,  # bodies are strict JSON: UTF-8, no NaN, no duplicate key (strict_json.py)
    responses=GATE_RESPONSES,
)


@router.post(
    "",
    status_code=202,
    summary="Record one activity",
    openapi_extra=ingest_body("ActivityIn"),
    responses={
        400: {
            **PROBLEM,
            "description": "Invalid activity (`errors` names every offending field), or a compressed "
            "body that does not decompress; or a secret API key sent in `?key=`, or a key sent twice.",
        },
        409: {
            **PROBLEM,
            "description": "This `id` (or Idempotency-Key) was sent before with other content: nothing "
            "accepted. (A conflict the API cannot see is reported by `/status` as `conflict`.)",
        },
        413: {
            **PROBLEM,
            "description": "Body (decompressed) larger than INGEST_MAX_EVENT_BYTES, or compressed more "
            "than INGEST_MAX_COMPRESSION_RATIO.",
        },
        415: UNSUPPORTED,
        503: {
            **PROBLEM,
            "description": "Kafka did not acknowledge in time, or the API is over capacity: nothing "
            "accepted. See Retry-After.",
        },
    },
)
async def record_activity(
    body: ActivityIn,
    request: Request,
    response: Response,
    services: Services,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Fixes the event id (as `id` in the body would): resending the same event with the "
            "same key stores nothing new; other content under it is a conflict (409).",
        ),
    ] = None,
) -> Accepted:
    """Validates the activity, publishes it to Kafka keyed by `userId`, and answers 202 only once the
    broker acknowledged it. The consumer stores it shortly after; `Location` points to where it will be."""
    content, headers = await accept_one(request, services, body, idempotency_key)
    response.headers.update(headers)
    return Accepted(**content)


# What the two ingest routes do once FastAPI has read their input. A valid body takes the fast path
# (fast_ingest.py), which calls these too: one definition of what is accepted and how it is answered.
async def accept_one(
    request: Request, services: ApiServices, body: ActivityIn, idempotency_key: str | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Publishes one activity: the 202's content and its headers."""
    activity = await services.record_activity.execute(
        body.to_draft(sender_of(request), _idempotent_id(body, idempotency_key))
    )
    location = public_path(request.scope, f"/api/activities/{activity.id}")
    return {"id": activity.id, "status": "accepted"}, {"location": location}


async def accept_batch(
    request: Request, services: ApiServices, body: BatchIn
) -> tuple[dict[str, Any], dict[str, str]]:
    """Publishes a batch's valid items: the 202's content (BatchAccepted) and its headers."""
    headers = await budget_of(request).spend(len(body.activities), prepaid=1)
    max_bytes = request.app.state.settings.ingest.max_event_bytes
    sender = sender_of(request)
    result = await services.record_batch.execute(
        [parse_item(raw, sender, max_bytes) for raw in body.activities]
    )
    rejected_events(request, result.rejected)
    return batch_body(result), {name.lower(): value for name, value in headers.items()}


@router.post(
    "/batch",
    status_code=202,
    response_model=BatchAccepted,
    summary="Record a batch of activities",
    openapi_extra=ingest_body("BatchIn"),
    responses={
        400: {
            **PROBLEM,
            "description": "No item is valid (the body carries `results` as in a 202), or a compressed "
            "body that does not decompress; or a secret API key sent in `?key=`, or a key sent twice.",
        },
        413: {
            **PROBLEM,
            "description": "Body (decompressed) over INGEST_MAX_BATCH_BYTES, compressed more than "
            "INGEST_MAX_COMPRESSION_RATIO, or more than INGEST_MAX_BATCH_ITEMS.",
        },
        415: UNSUPPORTED,
        503: {
            **PROBLEM,
            "description": "Kafka did not acknowledge in time, or the API is over capacity: nothing "
            "accepted. See Retry-After.",
        },
    },
)
async def record_batch(
    body: BatchIn, request: Request, response: Response, services: Services
) -> dict[str, Any]:
    """Each item is validated on its own. All valid items are published together, and the answer comes
    once Kafka acknowledged every one: `results` has one entry per item, in input order, `accepted` with
    its id or `rejected` with its errors. Items with an `id` are idempotent, as in the single endpoint; an
    item whose `id` was sent before with other content is `rejected` (errors on `id`).
    Spends one rate-limit token per item (the first one at the gate); a batch larger than
    RATE_LIMIT_BURST is a 413."""
    content, headers = await accept_batch(request, services, body)
    response.headers.update(headers)
    return content


@router.get(
    "",
    response_model=ActivityList,
    response_model_exclude_unset=True,
    summary="List activities",
    responses={400: PROBLEM, 503: UNAVAILABLE},
    dependencies=[Depends(given_once(ListParams))],
)
async def list_activities(
    params: Annotated[ListParams, Query()], request: Request, response: Response, services: Services
) -> dict[str, Any]:
    """Newest `timestamp` first (ties by id). Two pagination modes:

    - **page mode** (default, as the original service): `page` and `limit`; answers
      `{data, total, page, limit, totalPages, nextCursor, freshUntil}`. Deep pages cost more.
    - **cursor mode**: `cursor` (empty to start, then each answer's `nextCursor`) and `limit`; answers
      `{data, limit, nextCursor, freshUntil}` (plus `total` with `includeTotal=true`). Every page costs the
      same and events arriving meanwhile neither repeat nor shift rows. A cursor only fits the filters
      it was returned for.

    `freshUntil` (and the `X-Data-Fresh-Until` header): every event received before it is stored."""
    query = params.to_query(tenant_of(request))
    listing = await services.list_activities.execute(query)
    fresh_until_header(response, listing.fresh_until)
    return listing_body(listing, query, cursor_mode=params.cursor_mode, addresses=shows_addresses(request))


@router.get(
    "/stats",
    response_model=StatsOut,
    response_model_exclude_unset=True,
    summary="Counts over time",
    responses={400: PROBLEM, 503: UNAVAILABLE},
    dependencies=[Depends(given_once(StatsParams))],
)
async def activity_stats(
    params: Annotated[StatsParams, Query()], request: Request, response: Response, services: Services
) -> dict[str, Any]:
    """Exact counts of stored activities per `interval` (UTC `minute`, `hour` or `day`), every bucket from
    the one holding `startDate` to the one holding `endDate` (at most 1,000), the empty ones included.
    Filters as the list's (`userId`, `action` repeatable); `groupBy=action` splits each bucket by action.
    The counts are kept as events are stored (not computed by scanning them), so the cost follows the
    number of buckets, not of events; with `userId` the user's events in the range are counted along
    their index. `freshUntil`: every event received before it is counted."""
    query = params.to_query(tenant_of(request))
    counts = await services.count_activities.execute(query)
    fresh_until_header(response, counts.fresh_until)
    return stats_body(counts, query)


@router.get(
    "/{activity_id}",
    response_model=ActivityOut,
    summary="Get one activity",
    responses={404: PROBLEM, 503: UNAVAILABLE},
)
async def get_activity(activity_id: str, request: Request, services: Services) -> dict[str, Any]:
    """The stored activity of the key's tenant; 404 until the consumer has stored it (or when no such id
    was accepted, or it is another tenant's)."""
    activity = await services.get_activity.execute(tenant_of(request), activity_id)
    return activity_out(activity, addresses=shows_addresses(request))


def fresh_until_header(response: Response, fresh_until: datetime | None) -> None:
    """X-Data-Fresh-Until: every event received before it is stored (and counted)."""
    if fresh_until is not None:
        response.headers["X-Data-Fresh-Until"] = to_iso(fresh_until)


def _idempotent_id(body: ActivityIn, header: str | None) -> str | None:
    if header is None:
        return None
    if (problem := event_id_problem(header)) is not None:
        raise InvalidActivity([FieldError("Idempotency-Key", problem)])
    if body.id is not None and body.id != header:
        raise InvalidActivity([FieldError("Idempotency-Key", "differs from the `id` in the body")])
    return header


@router.get(
    "/{activity_id}/status",
    response_model=EventStatusOut,
    summary="Delivery status of one event",
    responses={503: UNAVAILABLE},
)
async def event_status(activity_id: str, request: Request, services: Services) -> dict[str, Any]:
    """Whether an accepted event is stored yet: `persisted`, `conflict` (the id came again with other
    content, which was not stored), `dead_lettered`, `pending` or `unknown` (also another tenant's)."""
    report = await services.get_event_status.execute(tenant_of(request), activity_id)
    fresh_until = None if report.fresh_until is None else to_iso(report.fresh_until)
    return {"id": report.id, "status": report.status.value, "freshUntil": fresh_until}
