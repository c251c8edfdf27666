"""Headers on every answer: no MIME sniffing, no framing, no referrer, a Content-Security-Policy that lets
nothing load, and no caching. A route may set its own (the Swagger UI page sets a looser CSP, see docs.py);
the Swagger UI's static files may be cached. Pure ASGI, so the cost per request is a list append."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from activity_service.interfaces.http.route_table import route_path

API_CSP = "default-src 'none'; frame-ancestors 'none'"

ALWAYS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
_UNLESS_SET = [(b"content-security-policy", API_CSP.encode()), (b"cache-control", b"no-store")]


class SecurityHeaders:
    def __init__(self, app: ASGIApp, cacheable_prefix: str = "/docs/static/") -> None:
        self.app = app
        self.cacheable_prefix = cacheable_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cacheable = route_path(scope).startswith(self.cacheable_prefix)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers += ALWAYS
                for name, value in _UNLESS_SET:
                    if name not in present and not (cacheable and name == b"cache-control"):
                        headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
