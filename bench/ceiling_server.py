"""The HTTP ceiling of scenario 1: `python -m bench.ceiling_server --port P`.

It is the real `activity-service api` (same uvicorn settings, same app, middleware, auth and routes)
built through the app's own seam, ``create_app(services=...)``, with one difference: the ingest use cases
publish to nothing. So POST /api/activities still parses the body, validates it (schema and domain
invariants), assigns an id and answers 202 with the same body and headers; it only skips Kafka. The gap
between this and scenario 2 is the cost of publishing and waiting for the broker's acknowledgment.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from activity_service import bootstrap
from activity_service.application.record_activity import RecordActivity
from activity_service.application.record_batch import RecordBatch
from activity_service.bootstrap import ApiServices
from activity_service.domain.activity import Activity
from activity_service.infrastructure.logging import configure_logging
from activity_service.infrastructure.settings import Settings
from activity_service.infrastructure.system import SystemClock, Uuid7Ids
from activity_service.interfaces.http.app import create_app
from activity_service.interfaces.http.server import serve


class NoPublisher:
    """An EventPublisher that accepts everything at once."""

    async def publish(self, activities: Sequence[Activity]) -> None:
        return None

    async def ping(self) -> None:
        return None


def ceiling_services(settings: Settings) -> bootstrap.ServiceProvider:
    @asynccontextmanager
    async def provide() -> AsyncIterator[ApiServices]:
        async with bootstrap.api_services(settings) as real:
            publisher, clock, ids = NoPublisher(), SystemClock(), Uuid7Ids()
            yield dataclasses.replace(
                real,
                record_activity=RecordActivity(publisher, clock, ids),
                record_batch=RecordBatch(publisher, clock, ids, max_items=settings.ingest.max_batch_items),
            )

    return provide


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.ceiling_server")
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(
        settings, services=ceiling_services(settings), rate_limiter=bootstrap.rate_limiter(settings)
    )
    return serve(app, settings, args.host or settings.api.host, args.port or settings.api.port)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
