"""Scenario 1's ceilings that carry none of the service's own code: `python -m bench.bare_server KIND`.

- ``validate`` (ceiling a): a bare FastAPI app, no middleware of ours, whose routes read the body with the
  service's JSON reader (``strict_json``: orjson plus its two checks) and validate it with the service's
  pydantic models (``ActivityIn``; ``BatchIn`` and each item through the same TypeAdapter as the batch
  route), then answer 202 with a body of the same shape. No auth, rate limit, guard, domain, id, Kafka,
  access log or metrics.
- ``asgi`` (ceiling b): a raw ASGI callable that reads the body and answers a fixed 202 without parsing
  anything: what uvicorn itself can do here.

Both are served with the service's own uvicorn settings (``server.uvicorn_config``: httptools with the
same limits, uvloop, keep-alive) and its GC tuning, except that uvicorn's access log is off: a log line per
request is the service's cost, measured against these.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from fastapi import FastAPI

from activity_service.infrastructure.settings import Settings
from activity_service.interfaces.collector import tune_gc
from activity_service.interfaces.http.schemas.ingest import (
    _ITEM,
    Accepted,
    ActivityIn,
    BatchAccepted,
    BatchIn,
)
from activity_service.interfaces.http.server import uvicorn_config
from activity_service.interfaces.http.strict_json import StrictJsonRoute

FIXED_ID = "0195f0c0-0000-7000-8000-000000000000"  # as long as the service's UUIDv7 ids
ACCEPTED = orjson.dumps({"id": FIXED_ID, "status": "accepted"})


def validate_app() -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.router.route_class = StrictJsonRoute

    @app.post("/api/activities", status_code=202)
    async def one(body: ActivityIn) -> Accepted:
        return Accepted(id=FIXED_ID)

    @app.post("/api/activities/batch", status_code=202, response_model=BatchAccepted)
    async def batch(body: BatchIn) -> dict[str, Any]:
        results = []
        for index, raw in enumerate(body.activities):
            len(orjson.dumps(raw))  # the batch route's per-item size check
            _ITEM.validate_python(raw)
            results.append({"index": index, "status": "accepted", "id": FIXED_ID})
        return {"accepted": len(results), "rejected": 0, "results": results}

    @app.get("/health/ready")
    @app.get("/health")
    async def ready() -> dict[str, str]:
        return {"status": "ok"}

    return app


Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
_HEADERS_202 = [(b"content-type", b"application/json"), (b"content-length", str(len(ACCEPTED)).encode())]
_OK = b'{"status":"ok"}'
_HEADERS_200 = [(b"content-type", b"application/json"), (b"content-length", str(len(_OK)).encode())]


async def asgi_app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:  # read the body (as any app must), parse nothing
        more = (await receive()).get("more_body", False)
    if scope["method"] == "GET":
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS_200})
        await send({"type": "http.response.body", "body": _OK})
    else:
        await send({"type": "http.response.start", "status": 202, "headers": _HEADERS_202})
        await send({"type": "http.response.body", "body": ACCEPTED})


def main(argv: Sequence[str]) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(prog="bench.bare_server")
    parser.add_argument("kind", choices=["validate", "asgi"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    settings = Settings()
    app: Any = validate_app() if args.kind == "validate" else asgi_app
    config = uvicorn_config(app, settings, "127.0.0.1", args.port)
    config.access_log = False
    tune_gc()
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
