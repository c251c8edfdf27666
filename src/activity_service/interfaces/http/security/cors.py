"""CORS: which web pages' scripts may call the API and read its answers.

Two lists of origins, each allowing what it is for:

- ``API_CORS_ORIGINS``: pages that may call any route with GET and POST (a dashboard holding a key);
  ``*``: any page (the ``null`` origin of sandboxed frames and files excepted).
- the origins of the publishable keys (AUTH_API_KEYS): pages that may POST activities, on the ingest
  routes only. The ApiGate then takes each publishable key only from its own origins (403 otherwise), so
  one shop's page cannot use another's key.

No credentials (cookies) are ever allowed: the API knows keys, not sessions. An answer to an allowed
origin carries ``Access-Control-Allow-Origin: <that origin>`` and ``Vary: Origin``, errors included (a
script must read a 429's Retry-After); an answer that set its own (the browser SDK's ``*``) is left
alone. A preflight (OPTIONS with Access-Control-Request-Method) is answered here, before any key is asked
for, as a browser sends none with it: 200 with what is allowed, or a 400 problem without CORS headers.
A beacon (text/plain, a request that needs no preflight) reaches the routes from any origin; what
refuses another origin there is the gate. Pure ASGI, one pass over the headers.
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from activity_service.interfaces.http.problems import problem
from activity_service.interfaces.http.route_table import route_path

ALLOWED_HEADERS = ("authorization", "x-api-key", "content-type", "content-encoding", "idempotency-key")
EXPOSED_HEADERS = b"Location, Retry-After, RateLimit, RateLimit-Policy"
MAX_AGE = b"600"
_ANY_ROUTE = ("GET", "POST")
_INGEST = ("POST",)


class Cors:
    def __init__(
        self,
        app: ASGIApp,
        origins: Collection[str] = (),
        ingest_origins: Collection[str] = (),
        ingest_paths: Collection[str] = (),
    ) -> None:
        """``origins`` may call any route; ``ingest_origins`` may POST to ``ingest_paths`` (routed)."""
        self.app = app
        # Browsers send the scheme and host in lower case; "*" (any origin) is what API_CORS_ORIGINS
        # meant under Starlette's CORSMiddleware too.
        self.origins = frozenset(origin.lower() for origin in origins)
        self.any_origin = "*" in self.origins
        self.ingest_origins = frozenset(ingest_origins)
        self.ingest_paths = frozenset(ingest_paths)

    def _methods(self, origin: str, path: str) -> tuple[str, ...]:
        """What a page of ``origin`` may do on ``path``."""
        if origin in self.origins or (self.any_origin and origin != "null"):
            return _ANY_ROUTE
        if origin in self.ingest_origins and path in self.ingest_paths:
            return _INGEST
        return ()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        methods = self._methods(origin, route_path(scope))
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(origin, methods, headers)(scope, receive, send)
            return
        if scope["method"] not in methods:
            await self.app(scope, receive, send)
            return
        allowed = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-expose-headers", EXPOSED_HEADERS),
            (b"vary", b"Origin"),
        ]

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = message.get("headers", [])
                if not any(name.lower() == b"access-control-allow-origin" for name, _ in present):
                    message = {**message, "headers": [*present, *allowed]}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    @staticmethod
    def _preflight(origin: str, methods: tuple[str, ...], headers: Headers) -> ASGIApp:
        if not methods:
            return problem(400, "CORS preflight refused: this origin may not call this path.")
        if headers["access-control-request-method"] not in methods:
            return problem(400, f"CORS preflight refused: this origin may only {' and '.join(methods)} here.")
        requested = [h.strip().lower() for h in headers.get("access-control-request-headers", "").split(",")]
        refused = [h for h in requested if h and h not in ALLOWED_HEADERS]
        if refused:
            return problem(400, f"CORS preflight refused: the header(s) {', '.join(refused)} are not allowed")
        return PlainTextResponse(
            "OK",
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": ", ".join(methods),
                "Access-Control-Allow-Headers": ", ".join(ALLOWED_HEADERS),
                "Access-Control-Max-Age": MAX_AGE.decode(),
                "Vary": "Origin",
            },
        )
