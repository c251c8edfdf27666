"""The FastAPI application factory. `uvicorn --factory activity_service.interfaces.http.app:create_app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from activity_service import __version__
from activity_service.bootstrap import api_services
from activity_service.infrastructure.settings import Settings
from activity_service.interfaces.http import docs, problems
from activity_service.interfaces.http.guard import IngestGuard
from activity_service.interfaces.http.routes import activities, health

DESCRIPTION = """
Ingest API for user-activity events. `POST` answers **202** only once Kafka acknowledged the event; a
separate consumer stores it in MongoDB shortly after, idempotently by event id. Errors are
`application/problem+json` (RFC 9457).
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings if settings is not None else Settings()

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
    )
    app.add_middleware(
        IngestGuard,
        limits={
            "/api/activities": settings.ingest.max_event_bytes,
            "/api/activities/batch": settings.ingest.max_batch_bytes,
        },
    )
    problems.install(app)
    app.include_router(activities.router)
    app.include_router(health.router)
    docs.install(app)
    return app
