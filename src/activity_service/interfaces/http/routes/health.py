"""Health for load balancers (cheap, no I/O) and readiness for orchestrators (checks dependencies)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from activity_service.interfaces.http.dependencies import Services
from activity_service.interfaces.http.schemas.common import Health, Readiness

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
    body = Readiness(status="ready" if result.ready else "unavailable", checks=dict(result.checks))
    return JSONResponse(body.model_dump(), status_code=200 if result.ready else 503)
