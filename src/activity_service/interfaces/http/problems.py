"""Errors to HTTP, in one place: every error answer is RFC 9457 `application/problem+json`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any, TypeVar

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from activity_service.application.erase_users import ErasureNotFound
from activity_service.application.record_batch import BatchTooLarge, InvalidBatch
from activity_service.application.resends import ConflictingResend
from activity_service.domain.errors import (
    ActivityNotFound,
    DomainError,
    FieldError,
    InvalidActivity,
    PublishUnavailable,
    QueryTimedOut,
    StoreUnavailable,
)
from activity_service.domain.feed import FeedUnavailable
from activity_service.interfaces.http.observability import rejected_events
from activity_service.interfaces.http.route_table import RouteTable, route_path
from activity_service.interfaces.http.schemas.common import field_errors
from activity_service.interfaces.http.schemas.ingest import batch_body

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


def problem(
    status: int,
    detail: str | None = None,
    *,
    errors: Iterable[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status}
    if detail is not None:
        body["detail"] = detail
    if errors is not None:
        body["errors"] = [{"field": e.field, "message": e.message} for e in errors]
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON)


Handler = Callable[[Request, Any], Awaitable[Response]]
Handlers = dict[type[Exception], Handler]
_E = TypeVar("_E", bound=Exception)


def install(app: FastAPI, answers: Handlers) -> None:
    """Has the app answer every error as ``answers`` says (``handlers``), and any other with a 500."""
    for exc_type, handler in answers.items():
        app.add_exception_handler(exc_type, handler)

    # The last resort, for errors in the middlewares themselves: Starlette answers it outside all of
    # them (no security headers, no X-Request-ID). Errors in routes meet UnexpectedErrors first.
    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _unexpected_answer(request.method, request.url.path)


def answer_for(answers: Handlers, exc: Exception) -> Handler | None:
    """The handler ``answers`` has for ``exc``, looked up along its classes as Starlette does."""
    for cls in type(exc).__mro__:
        if cls in answers:
            return answers[cls]
    return None


def handlers(routes: RouteTable) -> Handlers:
    """Every error the API answers with its own problem; ``routes`` tells a 405 which methods its path
    allows. One table for FastAPI's handlers and the ingest fast path (fast_ingest.py)."""
    answers: Handlers = {}

    def handles(exc_type: type[_E]) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            answers[exc_type] = handler
            return handler

        return register

    @handles(RequestValidationError)
    async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return problem(400, "The request is not valid.", errors=field_errors(exc.errors()))

    @handles(InvalidActivity)
    async def _invalid_activity(_: Request, exc: InvalidActivity) -> JSONResponse:
        return problem(400, "The request is not valid.", errors=exc.errors)

    @handles(InvalidBatch)
    async def _invalid_batch(request: Request, exc: InvalidBatch) -> JSONResponse:
        rejected_events(request, exc.result.rejected)
        return problem(400, "No activity in the batch is valid.", **batch_body(exc.result))

    @handles(BatchTooLarge)
    async def _batch_too_large(_: Request, exc: BatchTooLarge) -> JSONResponse:
        return problem(413, str(exc), limit=exc.limit)

    @handles(ActivityNotFound)
    async def _not_found(_: Request, exc: ActivityNotFound) -> JSONResponse:
        return problem(404, f"No activity with id {exc.activity_id!r} is stored.")

    @handles(ErasureNotFound)
    async def _no_erasure(_: Request, exc: ErasureNotFound) -> JSONResponse:
        return problem(404, f"No erasure with id {exc.erasure_id!r} was requested.")

    @handles(ConflictingResend)
    async def _conflict(_: Request, exc: ConflictingResend) -> JSONResponse:
        return problem(
            409,
            "This event id was accepted before with other content; a resend must carry the same content "
            "(or use a new id).",
            errors=[FieldError("id", "was accepted before with other content")],
        )

    @handles(PublishUnavailable)
    async def _unavailable(_: Request, exc: PublishUnavailable) -> JSONResponse:
        log.warning("answering 503: %s", exc.reason)
        # Only the reason's own words: the broker's error after the colon can name internal hosts.
        reason = exc.reason.split(":", 1)[0]
        return problem(
            503,
            f"Nothing was accepted: {reason}. Retry later; resending with the same id is safe.",
            headers={"Retry-After": str(exc.retry_after)},
        )

    @handles(FeedUnavailable)
    async def _feed_unavailable(_: Request, exc: FeedUnavailable) -> JSONResponse:
        log.warning("answering 503: %s", exc)
        return problem(
            503, "The event log cannot be read right now; retry later.", headers={"Retry-After": "2"}
        )

    @handles(QueryTimedOut)
    async def _query_timed_out(_: Request, exc: QueryTimedOut) -> JSONResponse:
        log.warning("answering 503: a read ran past QUERY_TIMEOUT_MS: %s", exc)
        return problem(
            503,
            "The query took longer than this API allows (QUERY_TIMEOUT_MS) and was stopped. Narrow the "
            "filters (userId, action, a time range), page with a cursor, or retry later.",
            headers={"Retry-After": "2"},
        )

    @handles(StoreUnavailable)
    async def _store_unavailable(_: Request, exc: StoreUnavailable) -> JSONResponse:
        return problem(503, "The activity store is unavailable; retry later.", headers={"Retry-After": "2"})

    @handles(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        return problem(400, str(exc))

    @handles(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names only the methods of the first route on the path; GET and POST
            # /api/activities are two routes, so a PUT would be told only one of them.
            allowed = routes.methods_for(route_path(request.scope))
            headers["Allow"] = ", ".join(allowed) or headers.get("Allow", "")
        return problem(exc.status_code, str(exc.detail), headers=headers)

    return answers


def _unexpected_answer(method: str, path: str) -> JSONResponse:
    log.exception("unhandled error on %s %s", method, path)
    return problem(500, "An unexpected error occurred; it has been logged.")


class UnexpectedErrors:
    """Answers an error no handler knows with a 500 problem from inside the middleware stack, so that
    the answer carries the security headers and the X-Request-ID like any other, and is counted under
    its route. Add it first (innermost). An error after the answer started is left to the server."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception:
            if started:
                raise
            await _unexpected_answer(scope["method"], scope["path"])(scope, receive, send)
