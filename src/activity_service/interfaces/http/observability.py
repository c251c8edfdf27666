"""Request ids, HTTP metrics, /metrics and tracing for the API.

RequestContext is pure ASGI and runs outermost: it takes the request id from ``X-Request-ID`` (when
safe) or makes one, puts it in the logging context and echoes it on the answer, and counts every answer
by route template, method and status, including those refused before routing (401, 413, 429...). It is
also the one place that counts refused events: a single POST's 400 or 413 is one; a batch says how many
of its items it refused (``rejected_events``).
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from activity_service.infrastructure.logging import access, redacted, request_id
from activity_service.infrastructure.observability import metrics
from activity_service.interfaces.http.route_table import RouteTable
from activity_service.interfaces.http.security.auth import key_required

SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
INGEST = "/api/activities"
_REJECTED = "rejected_events"
_MAX_CHILDREN = 1024


def rejected_events(request: Request, count: int) -> None:
    """Say how many of the request's events were refused as invalid (RequestContext counts them)."""
    request.scope.setdefault("state", {})[_REJECTED] = count


class RequestContext:
    def __init__(self, app: ASGIApp, routes: RouteTable, count: bool, access_log: bool = False) -> None:
        """``count``: metrics by route; ``access_log``: a line per answer (API_ACCESS_LOG), written here
        in place of uvicorn's (logging.access)."""
        self.app = app
        self.routes = routes
        self.count = count
        self.access_log = access_log
        # The metric children of each (route, method, status) met so far: ``labels()`` validates its
        # arguments and takes the metric's lock on every call. Bounded: past the bound, ``labels()``.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id")
        # 32 random hex digits (a uuid4's hex without building a UUID, which cost more than the rest here)
        rid = given if given is not None and SAFE_REQUEST_ID.fullmatch(given) else os.urandom(16).hex()
        token = request_id.set(rid)
        status = 0  # no answer started (yet): one the server will give, or none, if the client left
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            if self.access_log and status:
                access(scope, status, seconds)  # before the reset: the line carries the request id
            request_id.reset(token)
            if self.count:
                self._observe(scope, status or 500, seconds)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = self.routes.template(scope)
        method = scope["method"]
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = (
                metrics.HTTP_REQUESTS.labels(route, method, str(status)),
                metrics.HTTP_DURATION.labels(route, method),
            )
            if len(self._children) < _MAX_CHILDREN:
                self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
        rejected = scope.get("state", {}).get(_REJECTED)
        if rejected:
            metrics.EVENTS_REJECTED.labels("invalid").inc(rejected)
        elif route == INGEST and method == "POST" and status in (400, 413):
            metrics.EVENTS_REJECTED.labels("invalid" if status == 400 else "too_large").inc()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def install_metrics_route(app: FastAPI, protect: bool) -> None:
    @app.get("/metrics", include_in_schema=False, dependencies=key_required(protect))
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def instrument_tracing(app: FastAPI) -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    # One span per request, not three: the per-message "http send"/"http receive" spans say nothing the
    # request span does not, and leaving them out gave +30% traced single-POST throughput (same-machine A/B).
    FastAPIInstrumentor.instrument_app(
        app,
        excluded_urls="health,metrics,docs,openapi.json",
        exclude_spans=["receive", "send"],
        server_request_hook=_without_keys,
    )


_URL_ATTRIBUTES = ("http.url", "url.full", "http.target", "url.query")


def _without_keys(span: Any, scope: Scope) -> None:
    """A span records the request's URL with its query: an API key sent there (``?key=``) is redacted,
    as in the access log."""
    attributes = getattr(span, "attributes", None)
    if not attributes or not scope.get("query_string"):
        return
    for name in _URL_ATTRIBUTES:
        value = attributes.get(name)
        if isinstance(value, str):
            span.set_attribute(name, redacted(value) if name != "url.query" else redacted(f"?{value}")[1:])
