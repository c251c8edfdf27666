"""The door to /api: authenticates and authorizes every request there and spends its rate-limit token,
before the body is read or a route runs. Pure ASGI rather than FastAPI dependencies, which cost several
times more per request on the hot path.

Every request spends at least one token here, so that even a body that turns out invalid is paid for.
Routes listed in ``per_event_paths`` (the batch endpoint) spend the rest, one token per event beyond the
first, once they know how many events the body holds (``spend(..., prepaid=1)``); the client is in
``request.state.client`` (``client_of``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import cast

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from activity_service.bootstrap import ApiServices
from activity_service.interfaces.http.problems import problem
from activity_service.interfaces.http.security.auth import check, required_scope
from activity_service.interfaces.http.security.policy import HttpSecurity
from activity_service.interfaces.http.security.throttle import spend


class ApiGate:
    def __init__(
        self,
        app: ASGIApp,
        security: HttpSecurity,
        prefix: str = "/api/",
        per_event_paths: Collection[str] = (),
    ) -> None:
        self.app = app
        self.security = security
        self.prefix = prefix
        self.per_event_paths = frozenset(per_event_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (path.startswith(self.prefix) or path == self.prefix[:-1]):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            peer = scope["client"][0] if scope.get("client") else None
            address = self.security.client_address(peer, headers)
            client = check(self.security, headers, address, (required_scope(scope["method"]),))
            scope.setdefault("state", {})["client"] = client
            services = cast(ApiServices, scope["app"].state.services)
            rate_headers = await spend(services.rate_limiter, client, 1)
        except HTTPException as exc:
            await problem(exc.status_code, str(exc.detail), headers=exc.headers)(scope, receive, send)
            return
        if not rate_headers:
            await self.app(scope, receive, send)
            return
        extra = [(name.lower().encode(), value.encode()) for name, value in rate_headers.items()]

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", ())
                # A route that spent more tokens (a batch) has set fresher values already.
                if not any(name == b"ratelimit" for name, _ in headers):
                    message = {**message, "headers": [*headers, *extra]}
            await send(message)

        await self.app(scope, receive, send_with_limits)
