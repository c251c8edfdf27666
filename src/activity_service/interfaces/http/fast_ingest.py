"""The two ingest routes' way for a body that validates, past the framework.

POST /api/activities and /api/activities/batch are the hot path, and for them FastAPI's request
handling (routing through every route, solving the dependencies, validating and encoding the answer
through its response model) cost more CPU than validating the body (bench: "framework", "route" and
"respond" in the budget by stage). For a body that parses and validates, this runs what the routes run
(routes/activities.py ``accept_one``, ``accept_batch``: the same models, use cases and error answers)
and sends the 202 itself. Any other body goes on to the FastAPI route, so a refused body is answered
by the route itself, word for word. The routes stay declared for the OpenAPI document and for those
refusals; tests/http/test_fast_ingest.py sends the same requests both ways and compares the answers.

Pure ASGI, innermost: every middleware (request id, security headers, key, rate limit, guard) has run
before it, as before a route.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from activity_service.interfaces.http import strict_json
from activity_service.interfaces.http.bodies import replay
from activity_service.interfaces.http.problems import Handlers, answer_for
from activity_service.interfaces.http.route_table import route_path
from activity_service.interfaces.http.routes.activities import accept_batch, accept_one
from activity_service.interfaces.http.schemas.ingest import ActivityIn, BatchIn

ONE, BATCH = "/api/activities", "/api/activities/batch"
_IDEMPOTENCY_KEY = b"idempotency-key"
_JSON = (b"content-type", b"application/json")


class FastIngest:
    def __init__(self, app: ASGIApp, answers: Handlers) -> None:
        """``answers``: the app's error handlers (problems.handlers), for what the use cases raise."""
        self.app = app
        self.answers = answers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = route_path(scope)
            if path == ONE or path == BATCH:
                await self._ingest(path == BATCH, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _ingest(self, batch: bool, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _body(receive)
        try:
            value = strict_json.loads(body)
            one = None if batch else ActivityIn.model_validate(value)
            many = BatchIn.model_validate(value) if batch else None
        except ValueError:  # not JSON, or not valid (pydantic's ValidationError is a ValueError)
            await self.app(scope, replay(body, receive), send)  # the route says what is wrong
            return
        request = Request(scope, receive)
        services = request.app.state.services
        try:
            if many is not None:
                content, headers = await accept_batch(request, services, many)
            else:
                assert one is not None
                content, headers = await accept_one(request, services, one, _header(scope))
        except Exception as exc:
            handler = answer_for(self.answers, exc)
            if handler is None:
                raise  # UnexpectedErrors answers it, as for a route
            await (await handler(request, exc))(scope, receive, send)
            return
        await _accepted(send, content, headers)


async def _body(receive: Receive) -> bytes:
    """The whole body (the IngestGuard hands it on in one message)."""
    message = await receive()
    body: bytes = message.get("body", b"")
    while message.get("more_body", False):
        message = await receive()
        body += message.get("body", b"")
    return body


def _header(scope: Scope) -> str | None:
    """Idempotency-Key as FastAPI reads a header parameter: its first line, decoded as Latin-1."""
    for name, value in scope["headers"]:
        if name == _IDEMPOTENCY_KEY:
            return str(value.decode("latin-1"))
    return None


async def _accepted(send: Send, content: dict[str, Any], headers: dict[str, str]) -> None:
    """The 202 as FastAPI's JSONResponse would send it: the same bytes and headers, in the same order."""
    payload = orjson.dumps(content)
    raw = [(b"content-length", str(len(payload)).encode()), _JSON]
    raw += [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
    await send({"type": "http.response.start", "status": 202, "headers": raw})
    await send({"type": "http.response.body", "body": payload})
