"""The HTTP ceiling of scenario 1: `python -m bench.ceiling_server --port P`.

It is the real `activity-service api` (same CLI, same uvicorn settings, same app, middleware, auth and
routes) with one difference: the use cases publish to nothing. So POST /api/activities still parses the
body, validates it (schema and domain invariants), assigns an id and answers 202 with the same body and
headers; it only skips Kafka. The gap between this and scenario 2 is the cost of publishing and waiting
for the broker's acknowledgment.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from activity_service.application.record_activity import RecordActivity
from activity_service.application.record_batch import RecordBatch
from activity_service.bootstrap import ApiServices
from activity_service.domain.activity import Activity
from activity_service.infrastructure.system import SystemClock, Uuid7Ids
from activity_service.interfaces import cli
from activity_service.interfaces.http import app as app_module


class NoPublisher:
    """An EventPublisher that accepts everything at once."""

    async def publish(self, activities: Sequence[Activity]) -> None:
        return None

    async def ping(self) -> None:
        return None


_create_app = app_module.create_app


def create_ceiling_app(settings: Any = None) -> Any:
    app = _create_app(settings)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        async with inner(application) as state:
            services = getattr(application.state, "services", None)
            if not isinstance(services, ApiServices):
                raise RuntimeError(
                    "bench ceiling server: app.state.services is not the ApiServices dataclass any more; "
                    "update bench/ceiling_server.py to the new composition root"
                )
            publisher = NoPublisher()
            application.state.services = dataclasses.replace(
                services,
                record_activity=RecordActivity(publisher, SystemClock(), Uuid7Ids()),
                record_batch=RecordBatch(
                    publisher, SystemClock(), Uuid7Ids(), max_items=services.settings.ingest.max_batch_items
                ),
            )
            yield state

    app.router.lifespan_context = lifespan
    return app


def main(argv: Sequence[str]) -> int:
    # The CLI imports create_app from this module when it serves, so it builds the ceiling app instead,
    # and everything else (uvicorn options, logging, settings) stays exactly the service's.
    app_module.create_app = create_ceiling_app
    return cli.main(["api", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
