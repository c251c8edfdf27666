"""The door to the API: authenticates and authorizes every request and spends its rate-limit token,
before the body is read or a route runs. Pure ASGI rather than FastAPI dependencies, which cost several
times more per request on the hot path.

Deny by default, decided on the path the router will route (``route_path``: without the ``root_path``
the app is served or mounted under), so that what is checked is what is served. Only the paths in
``OpenPaths`` pass without a key: liveness and readiness, the explorer page and the static files of it
and of the Swagger UI, the browser SDK (/sdk/activity.js), and /docs, /openapi.json and /metrics
unless AUTH_PROTECT_DOCS / AUTH_PROTECT_METRICS ask for a key (any valid secret key then, and no
rate-limit token). Every other path, known or not, needs a key holding the scope its method needs
(activities:read to GET, activities:write otherwise) and spends a token.

Every request spends at least one token here, so that even a body that turns out invalid is paid for.
Routes listed in ``per_event_paths`` (the batch endpoint) spend the rest, one token per event beyond the
first, once they know how many events the body holds: the gate leaves the request's Budget in
``request.state.budget`` (``budget_of``), and the client in ``request.state.client`` (``client_of``).
A publishable key also spends from its client address's bucket (throttle.py).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import Enum

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from activity_service.infrastructure.rate_limit import TokenBuckets
from activity_service.interfaces.http.problems import problem
from activity_service.interfaces.http.route_table import RouteTable, route_path
from activity_service.interfaces.http.security.auth import check, required_scope
from activity_service.interfaces.http.security.policy import HttpSecurity
from activity_service.interfaces.http.security.throttle import Budget


class Access(Enum):
    OPEN = "no key"
    ANY_KEY = "any valid key, no token"
    SCOPED = "a key with the method's scope, and a token"


@dataclass(frozen=True, slots=True)
class OpenPaths:
    """The paths that need less than a scoped key; every other one needs it."""

    protect_docs: bool = False
    protect_metrics: bool = False

    ALWAYS = frozenset({"/health", "/health/ready", "/explorer", "/sdk/activity.js"})
    """Liveness, readiness, the explorer page (static: it holds no data and no key; everything it
    shows comes from /api, which asks for the key) and the browser SDK (a static script: web pages load
    it before they hold anything)."""
    STATIC = ("/docs/static/", "/explorer/static/")
    """Public files of the Swagger UI bundle and of the explorer: a browser fetches them without a key."""
    DOCS = frozenset({"/docs", "/openapi.json"})
    METRICS = "/metrics"

    @classmethod
    def of(cls, security: HttpSecurity) -> OpenPaths:
        return cls(protect_docs=security.protect_docs, protect_metrics=security.protect_metrics)

    def access(self, path: str) -> Access:
        """``path`` as routed (see ``route_path``)."""
        if path in self.ALWAYS or path.startswith(self.STATIC):
            return Access.OPEN
        if path in self.DOCS:
            return Access.ANY_KEY if self.protect_docs else Access.OPEN
        if path == self.METRICS:
            return Access.ANY_KEY if self.protect_metrics else Access.OPEN
        return Access.SCOPED


class ApiGate:
    def __init__(
        self,
        app: ASGIApp,
        security: HttpSecurity,
        rate_limiter: TokenBuckets | None,
        per_event_paths: Collection[str] = (),
        address_limiter: TokenBuckets | None = None,
        routes: RouteTable | None = None,
    ) -> None:
        """``rate_limiter``: the clients' token buckets; None when requests are not limited.
        ``per_event_paths``: routed paths whose route spends a token per event (the batch endpoint).
        ``address_limiter``: the buckets of publishable keys' client addresses (None: no such limit).
        ``routes``: the app's routes; a method none of them serves on a known path (TRACE, PUT, DELETE
        /api/activities) is a 405 whatever the key, as no key could make it anything else."""
        self.app = app
        self.security = security
        self.rate_limiter = rate_limiter
        self.address_limiter = address_limiter
        self.open_paths = OpenPaths.of(security)
        self.per_event_paths = frozenset(per_event_paths)
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan; no websocket route exists (the router closes those)
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        access = self.open_paths.access(path)
        if access is Access.OPEN:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            peer = scope["client"][0] if scope.get("client") else None
            address = self.security.client_address(peer, headers)
            query = scope.get("query_string", b"")
            if access is Access.ANY_KEY:
                check(self.security, headers, address, (), query)
                rate_headers = {}
            else:
                needed = (required_scope(scope["method"], path),)
                client = check(self.security, headers, address, needed, query)
                budget = Budget(self.rate_limiter, client, self.address_limiter, address)
                state = scope.setdefault("state", {})
                state["client"], state["budget"] = client, budget
                rate_headers = await budget.spend(1)
        except HTTPException as exc:
            # A method no route serves on this path is a 405 whatever the key says (checked only here,
            # off the hot path: with a good key the router answers it).
            allowed = self.routes.methods_for(path) if self.routes is not None else []
            if allowed and scope["method"] not in allowed:
                refused = problem(405, "Method Not Allowed", headers={"Allow": ", ".join(allowed)})
            else:
                refused = problem(exc.status_code, str(exc.detail), headers=exc.headers)
            await refused(scope, receive, send)
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
