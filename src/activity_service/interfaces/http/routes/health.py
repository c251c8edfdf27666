"""Health for load balancers (cheap, no I/O) and readiness for orchestrators (checks dependencies)."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from activity_service.application.check_readiness import OK
from activity_service.interfaces.http.dependencies import Services
from activity_service.interfaces.http.schemas.common import Health, Readiness

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, summary="Liveness")
async def health() -> Health:
    """Answers 200 while the process serves HTTP. Checks nothing else, so it is cheap to poll."""
    return Health()


@router.get(
    "/health/ready",
    response_model=Readiness,
    summary="Readiness",
    responses={503: {"model": Readiness, "description": "A dependency is failing; `checks` says which."}},
)
async def ready(services: Services) -> JSONResponse:
    """200 when Kafka and the database both answer; otherwise 503 naming the failing dependency."""
    result = await services.readiness.execute()
    # The reasons go to the log only: this endpoint is open, and they can name internal hosts.
    checks = {name: OK if outcome == OK else "unavailable" for name, outcome in result.checks.items()}
    if not result.ready:
        log.warning("not ready: %s", result.checks)
    body = Readiness(status="ready" if result.ready else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if result.ready else 503)
