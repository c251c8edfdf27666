"""The FastAPI application factory. `uvicorn --factory activity_service.interfaces.http.app:create_app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from starlette.middleware import Middleware

from activity_service import __version__, bootstrap
from activity_service.bootstrap import ServiceProvider
from activity_service.infrastructure.observability.tracing import tracing_enabled
from activity_service.infrastructure.rate_limit import TokenBuckets
from activity_service.infrastructure.settings import Settings
from activity_service.interfaces.http import docs, explorer, problems, sdk
from activity_service.interfaces.http.fast_ingest import FastIngest
from activity_service.interfaces.http.guard import AcceptQueue, IngestGuard, ReadGuard
from activity_service.interfaces.http.observability import (
    RequestContext,
    install_metrics_route,
    instrument_tracing,
)
from activity_service.interfaces.http.route_table import RouteTable
from activity_service.interfaces.http.routes import ROUTERS
from activity_service.interfaces.http.security.cors import Cors
from activity_service.interfaces.http.security.gate import ApiGate
from activity_service.interfaces.http.security.headers import SecurityHeaders
from activity_service.interfaces.http.security.policy import HttpSecurity
from activity_service.interfaces.http.stream import Streams

DESCRIPTION = """
Ingest API for user-activity events. `POST` answers **202** only once Kafka acknowledged the event; a
separate consumer stores it (MongoDB or PostgreSQL) shortly after, idempotently by event id within the
key's tenant (the same id with other content is a conflict: 409, or `conflict` at `/status`). Errors are
`application/problem+json` (RFC 9457).

Every `/api` route needs an API key, as `Authorization: Bearer <key>` or `X-API-Key: <key>`: scope
`activities:write` to POST, `activities:read` to GET, `activities:read-pii` to see `ipAddress` where
PII_READ_SCOPE_REQUIRED is set, `activities:erase` to erase a user. A key sees only its tenant's events.
Each client has a token bucket: a request costs one token, a batch one per event; answers carry
`RateLimit` and `RateLimit-Policy`, and 429 `Retry-After`.

The POST bodies may be compressed (`Content-Encoding: gzip` or `deflate`); the size limits count the
decompressed body. Web pages use a **publishable** key (write only, from its own origins, also as
`?key=`), may send `text/plain` bodies holding JSON (`navigator.sendBeacon`), and can load the browser
SDK from `/sdk/activity.js`.
"""


def create_app(
    settings: Settings | None = None,
    *,
    services: ServiceProvider | None = None,
    rate_limiter: TokenBuckets | None = None,
    address_limiter: TokenBuckets | None = None,
    fast_ingest: bool = True,
) -> FastAPI:
    """The API. By default it runs the real use cases, which bootstrap builds from ``settings`` when the
    app starts, and the rate limits the settings describe. Tests and the bench pass their own
    ``services`` (use cases over other adapters), ``rate_limiter`` and ``address_limiter`` (the
    publishable keys' buckets per client address) through the same door (none: no limit).
    ``fast_ingest=False`` sends every ingest request through FastAPI's routes (tests compare the two)."""
    settings = settings if settings is not None else Settings()
    # Refuses an open API by mistake, and the keys shipped in the repository outside development.
    security = HttpSecurity.from_settings(
        settings.auth, settings.api, development=settings.app_env == "development"
    )
    if services is None:
        if rate_limiter is not None or address_limiter is not None:
            raise TypeError("create_app: pass rate limiters only with services (else the settings decide)")
        services = partial(bootstrap.api_services, settings)
        rate_limiter = bootstrap.rate_limiter(settings)
        address_limiter = bootstrap.address_limiter(settings, security.publishable)
    provide = services

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with provide() as ready:
                app.state.services = ready
                yield
        finally:
            for limiter in (rate_limiter, address_limiter):
                if limiter is not None:
                    await limiter.close()

    app = FastAPI(
        title="activity-service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # docs.install serves it, behind a key when AUTH_PROTECT_DOCS is set
        # Tracing is ours (instrument_tracing: one span per request, keys redacted), metrics are
        # Prometheus': FastAPI's own telemetry would add a second server span per request once a tracer
        # provider is set, and without one still looked for providers in the environment on every
        # request (~30 µs of a single POST's CPU, bench.parsing).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.security = security
    app.state.streams = Streams(
        settings.stream.max_clients, settings.stream.heartbeat_seconds, settings.stream.max_seconds
    )
    routes = RouteTable()  # filled once every route is declared, below
    answers = problems.handlers(routes)
    # The server's listening sockets are registered here once bound (cli._serve_api).
    app.state.accept_queue = accept_queue = AcceptQueue()
    ingest = settings.ingest
    limits = {"/api/activities": ingest.max_event_bytes, "/api/activities/batch": ingest.max_batch_bytes}
    origins = settings.api.cors_origin_list
    ingest_origins = security.keys.origins if security.keys is not None else frozenset()
    # The HTTP pipeline, in the order a request meets it.
    pipeline = [
        # request id in, X-Request-ID out; every answer counted, also those refused before routing
        Middleware(
            RequestContext, routes=routes, count=settings.metrics_enabled, access_log=settings.api.access_log
        ),
        Middleware(SecurityHeaders),  # on every answer, errors included
        # browsers' preflights are answered before a key is asked for
        *(
            [Middleware(Cors, origins=origins, ingest_origins=ingest_origins, ingest_paths=tuple(limits))]
            if origins or ingest_origins
            else []
        ),
        # the key (a publishable one from its origins) and its scope, then one rate-limit token (and one
        # of the client address's, for a publishable key): before the body is read
        Middleware(
            ApiGate,
            security=security,
            rate_limiter=rate_limiter,
            per_event_paths={"/api/activities/batch"},
            address_limiter=address_limiter,
            routes=routes,
        ),
        # overload (503), media type and coding (415), body size inflated (413) or corrupt (400), still
        # before parsing
        Middleware(
            IngestGuard,
            limits=limits,
            max_concurrent=ingest.max_concurrent_requests,
            max_loop_lag=ingest.max_loop_lag_seconds,
            accept_queue=accept_queue,
            max_accept_queue=ingest.max_accept_queue,
            max_body_bytes=ingest.max_body_bytes_in_progress,
            max_compression_ratio=ingest.max_compression_ratio,
        ),
        # reads in progress (503 beyond QUERY_MAX_CONCURRENT)
        Middleware(
            ReadGuard, max_concurrent=settings.query.max_concurrent, exclude={"/api/activities/stream"}
        ),
        Middleware(problems.UnexpectedErrors),  # a 500 answered inside all of the above
        # a valid ingest body is accepted here, past the framework; any other meets its route
        *([Middleware(FastIngest, answers=answers)] if fast_ingest else []),
    ]
    for middleware in reversed(pipeline):  # add_middleware puts each in front of those added before
        app.add_middleware(middleware.cls, *middleware.args, **middleware.kwargs)
    problems.install(app, answers)
    for router in ROUTERS:
        app.include_router(router)
        routes.load(router.routes)
    docs.install(app, protect=security.protect_docs)
    explorer.install(app)  # open: a static page; its data calls send the key (explorer/__init__.py)
    sdk.install(app)  # open: the browser SDK, a static script
    if settings.metrics_enabled:
        install_metrics_route(app, protect=security.protect_metrics)
    routes.load(app.router.routes)  # the ones declared on the app itself (docs, metrics)
    if tracing_enabled():
        instrument_tracing(app)
    return app
