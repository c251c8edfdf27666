"""The FastAPI application factory. `uvicorn --factory activity_service.interfaces.http.app:create_app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from activity_service import __version__
from activity_service.bootstrap import api_services
from activity_service.infrastructure.observability.tracing import tracing_enabled
from activity_service.infrastructure.settings import Settings
from activity_service.interfaces.http import docs, problems
from activity_service.interfaces.http.guard import AcceptQueue, IngestGuard
from activity_service.interfaces.http.observability import (
    RequestContext,
    install_metrics_route,
    instrument_tracing,
)
from activity_service.interfaces.http.routes import activities, health
from activity_service.interfaces.http.security.gate import ApiGate
from activity_service.interfaces.http.security.headers import SecurityHeaders
from activity_service.interfaces.http.security.policy import HttpSecurity

DESCRIPTION = """
Ingest API for user-activity events. `POST` answers **202** only once Kafka acknowledged the event; a
separate consumer stores it in MongoDB shortly after, idempotently by event id. Errors are
`application/problem+json` (RFC 9457).

Every `/api` route needs an API key, as `Authorization: Bearer <key>` or `X-API-Key: <key>`: scope
`activities:write` to POST, `activities:read` to GET. Each client has a token bucket: a request costs one
token, a batch one per event; answers carry `RateLimit` and `RateLimit-Policy`, and 429 `Retry-After`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings if settings is not None else Settings()
    security = HttpSecurity.from_settings(settings.auth, settings.api)  # refuses an open API by mistake

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with api_services(settings) as services:
            app.state.services = services
            yield

    app = FastAPI(
        title="activity-service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # docs.install serves it, behind a key when AUTH_PROTECT_DOCS is set
    )
    app.state.security = security
    # The server's listening sockets are registered here once bound (cli._serve_api).
    app.state.accept_queue = accept_queue = AcceptQueue()
    # The last added runs first: security headers on every answer, CORS preflights answered before the
    # gate asks for a key, the key checked before the body is looked at, and errors answered inside it all.
    app.add_middleware(problems.UnexpectedErrors)
    app.add_middleware(
        IngestGuard,
        limits={
            "/api/activities": settings.ingest.max_event_bytes,
            "/api/activities/batch": settings.ingest.max_batch_bytes,
        },
        max_concurrent=settings.ingest.max_concurrent_requests,
        max_loop_lag=settings.ingest.max_loop_lag_seconds,
        accept_queue=accept_queue,
        max_accept_queue=settings.ingest.max_accept_queue,
    )
    app.add_middleware(ApiGate, security=security, per_event_paths={"/api/activities/batch"})
    if origins := settings.api.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Idempotency-Key"],
            expose_headers=["Location", "Retry-After", "RateLimit", "RateLimit-Policy"],
            max_age=600,
        )
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestContext, routes=app.routes, count=settings.metrics_enabled)
    problems.install(app)
    app.include_router(activities.router)
    app.include_router(health.router)
    docs.install(app, protect=security.protect_docs)
    if settings.metrics_enabled:
        install_metrics_route(app, protect=security.protect_metrics)
    if tracing_enabled():
        instrument_tracing(app)
    return app
