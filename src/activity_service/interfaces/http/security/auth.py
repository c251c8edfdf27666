"""Who may call what: a key (``Authorization: Bearer <key>`` or ``X-API-Key: <key>``) holding the scope the
request needs. No key or an unknown one is a 401 with WWW-Authenticate; a key without the scope is a 403.

The ApiGate middleware applies this to every /api route, by method (activities:read to GET,
activities:write to POST), so a new route is protected without a line. ``authenticated`` is the same check
as a FastAPI dependency for routes that are open unless a setting protects them (/docs, /metrics).
With AUTH_ENABLED=false every request passes, as an anonymous client known by its address.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from fastapi import HTTPException, Request, Security
from fastapi.security import SecurityScopes
from starlette.datastructures import Headers

from activity_service.interfaces.http.dependencies import client_address
from activity_service.interfaces.http.security.keys import ERASE, READ, WRITE, Client
from activity_service.interfaces.http.security.policy import HttpSecurity, security_of

REALM = 'Bearer realm="activity-service"'
SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <API key>`"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "`X-API-Key: <key>`"},
}


ERASURE_PATHS = ("/api/users/", "/api/erasures/")


def required_scope(method: str, path: str = "") -> str:
    """What a request to ``path`` (as routed) needs: erasing a user's data, and reading how an erasure
    goes, need activities:erase; any other GET activities:read; anything else activities:write."""
    if path.startswith(ERASURE_PATHS):
        return ERASE
    return READ if method in ("GET", "HEAD") else WRITE


def check(security: HttpSecurity, headers: Headers, address: str | None, scopes: Sequence[str]) -> Client:
    """The client that ``headers`` identify, holding ``scopes``; otherwise HTTPException 401 or 403."""
    if security.keys is None:
        return Client.anonymous(address)
    presented = _presented_key(headers)
    if not presented:
        raise _unauthenticated("Send an API key: `Authorization: Bearer <key>` or `X-API-Key: <key>`.")
    client = security.keys.identify(presented)
    if client is None:
        raise _unauthenticated("The API key is not valid.", 'error="invalid_token"')
    missing = [scope for scope in scopes if scope not in client.scopes]
    if missing:
        challenge = f'{REALM}, error="insufficient_scope", scope="{" ".join(missing)}"'
        raise HTTPException(
            403,
            f"The API key {client.name!r} does not have the scope {', '.join(missing)} that this needs.",
            headers={"WWW-Authenticate": challenge},
        )
    return client


async def authenticated(request: Request, required: SecurityScopes) -> Client:
    """Dependency: the calling client, holding the scopes the route declares (none: any valid key)."""
    return check(security_of(request), request.headers, client_address(request), required.scopes)


def key_required(protect: bool) -> list[Any]:
    """Dependencies for a route that is open unless a setting protects it (AUTH_PROTECT_DOCS,
    AUTH_PROTECT_METRICS), and then open to any valid key:
    ``@app.get("/metrics", dependencies=key_required(app.state.security.protect_metrics))``. An endpoint
    that is not a FastAPI route (a mounted ASGI app) can call ``check(security, headers, address, ())``."""
    return [Security(authenticated)] if protect else []


def client_of(request: Request) -> Client:
    """The client the ApiGate identified for this request (routes under /api only)."""
    return cast(Client, request.state.client)


def document(schema: dict[str, Any], prefix: str = "/api/") -> None:
    """Adds the two ways to send a key to an OpenAPI document, required on every operation under
    ``prefix`` (Swagger UI's Authorize button then sends it)."""
    schema.setdefault("components", {}).setdefault("securitySchemes", {}).update(SCHEMES)
    for path, operations in schema.get("paths", {}).items():
        if path.startswith(prefix):
            for operation in operations.values():
                operation["security"] = [{name: []} for name in SCHEMES]


def _presented_key(headers: Headers) -> str | None:
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    return headers.get("x-api-key")


def _unauthenticated(detail: str, error: str | None = None) -> HTTPException:
    challenge = f"{REALM}, {error}" if error else REALM
    return HTTPException(401, detail, headers={"WWW-Authenticate": challenge})
