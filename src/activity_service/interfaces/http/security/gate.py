"""The door to /api: authenticates and authorizes every request there and spends its rate-limit token,
before the body is read or a route runs. Pure ASGI rather than FastAPI dependencies, which cost several
times more per request on the hot path.

Every request spends at least one token here, so that even a body that turns out invalid is paid for.
Routes listed in ``per_event_paths`` (the batch endpoint) spend the rest, one token per event beyond the
first, once they know how many events the body holds: the gate leaves the request's Budget in
``request.state.budget`` (``budget_of``), and the client in ``request.state.client`` (``client_of``).
"""

from __future__ import annotations

from collections.abc import Collection

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from activity_service.infrastructure.rate_limit import TokenBuckets
from activity_service.interfaces.http.problems import problem
from activity_service.interfaces.http.security.auth import check, required_scope
from activity_service.interfaces.http.security.policy import HttpSecurity
from activity_service.interfaces.http.security.throttle import Budget


class ApiGate:
    def __init__(
        self,
        app: ASGIApp,
        security: HttpSecurity,
        rate_limiter: TokenBuckets | None,
        prefix: str = "/api/",
        per_event_paths: Collection[str] = (),
    ) -> None:
        """``rate_limiter``: the clients' token buckets; None when requests are not limited."""
        self.app = app
        self.security = security
        self.rate_limiter = rate_limiter
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
            budget = Budget(self.rate_limiter, client)
            state = scope.setdefault("state", {})
            state["client"], state["budget"] = client, budget
            rate_headers = await budget.spend(1)
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
