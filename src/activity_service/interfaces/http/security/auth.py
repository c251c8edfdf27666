"""Who may call what: a key (``Authorization: Bearer <key>`` or ``X-API-Key: <key>``) holding the scope the
request needs. No key or an unknown one is a 401 with WWW-Authenticate; a key without the scope is a 403.

A publishable key (for web pages: anyone can read it there) may also travel in the query, ``?key=``,
because a browser's beacon cannot set a header. It is taken only from its own origins (the ``Origin``
header, which browsers always send on a cross-origin POST; none is a 403 too) and never unlocks the
docs or metrics. A secret key in the query is refused (400) rather than used: a URL ends up in access
logs, proxies' logs and browser histories, so the client must learn to stop at once (the API's own
access log redacts it, see logging.py).

The ApiGate middleware applies this to every /api route, by method (activities:read to GET,
activities:write to POST), so a new route is protected without a line. ``authenticated`` is the same check
as a FastAPI dependency for routes that are open unless a setting protects them (/docs, /metrics).
With AUTH_ENABLED=false every request passes, as an anonymous client known by its address.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import parse_qsl

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
QUERY_SCHEMES = {
    "publishableKey": {
        "type": "apiKey",
        "in": "query",
        "name": "key",
        "description": "`?key=<publishable key>`, on the ingest routes only (a secret key here is a 400), "
        "from a web page of one of the key's origins (`Origin`, else 403).",
    }
}


ERASURE_PATHS = ("/api/users/", "/api/erasures/")
QUERY_KEY = "key"
"""The query parameter a publishable key may travel in."""
_MAX_ORIGIN_SHOWN = 120

log = logging.getLogger(__name__)


def required_scope(method: str, path: str = "") -> str:
    """What a request to ``path`` (as routed) needs: erasing a user's data, and reading how an erasure
    goes, need activities:erase; any other GET activities:read; anything else activities:write."""
    if path.startswith(ERASURE_PATHS):
        return ERASE
    return READ if method in ("GET", "HEAD") else WRITE


def check(
    security: HttpSecurity,
    headers: Headers,
    address: str | None,
    scopes: Sequence[str],
    query_string: bytes = b"",
) -> Client:
    """The client that ``headers`` (or, for a publishable key, ``query_string``) identify, holding
    ``scopes`` (none: any valid secret key); otherwise HTTPException 400, 401 or 403."""
    if security.keys is None:
        return Client.anonymous(address)
    presented, in_query = _presented_key(headers, query_string)
    if not presented:
        raise _unauthenticated("Send an API key: `Authorization: Bearer <key>` or `X-API-Key: <key>`.")
    client = security.keys.identify(presented)
    if client is None:
        raise _unauthenticated("The API key is not valid.", 'error="invalid_token"')
    if in_query and not client.publishable:
        log.warning("refused the secret API key %r sent in a URL's query: it should be replaced", client.name)
        raise _invalid_request(
            f"The API key {client.name!r} is secret: send it in the Authorization header, never in a URL, "
            "which logs and proxies keep. Consider it exposed and replace it."
        )
    if client.origins is not None:
        _from_its_origins(client, headers.getlist("origin"), scopes)
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
    return check(
        security_of(request),
        request.headers,
        client_address(request),
        required.scopes,
        request.scope.get("query_string", b""),
    )


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
    """Adds the two ways to send a key in a header to an OpenAPI document, required on every operation
    under ``prefix`` (Swagger UI's Authorize button then sends it), beside the query's publishable key
    on the operations that declare it (the ingest routes)."""
    schema.setdefault("components", {}).setdefault("securitySchemes", {}).update(SCHEMES | QUERY_SCHEMES)
    for path, operations in schema.get("paths", {}).items():
        if path.startswith(prefix):
            for operation in operations.values():
                declared = [s for s in operation.get("security", []) if set(s) <= set(QUERY_SCHEMES)]
                operation["security"] = [{name: []} for name in SCHEMES] + declared


def _from_its_origins(client: Client, origin: Sequence[str], scopes: Sequence[str]) -> None:
    """A publishable key is public: it records activities (``scopes`` names what the request needs; none
    is the docs or metrics) and only from the pages of its origins: one ``Origin`` header, as browsers
    send it (scheme://host[:port], lower case), naming one of them; none, ``null``, a list or two
    headers are refused like a stranger's origin."""
    if not scopes:
        raise HTTPException(403, f"The API key {client.name!r} is publishable: it only records activities.")
    if client.origins is not None and (len(origin) != 1 or origin[0] not in client.origins):
        if not origin:
            came = "carries no Origin"
        elif len(origin) > 1:
            came = "carries more than one Origin"
        else:
            came = f"comes from {origin[0][:_MAX_ORIGIN_SHOWN]!r}"
        raise HTTPException(
            403,
            f"The publishable API key {client.name!r} is taken only from the web origins it lists; this "
            f"request {came}.",
        )


def _presented_key(headers: Headers, query_string: bytes) -> tuple[str | None, bool]:
    """The key the request carries, and whether it came in the query."""
    in_query = _query_key(query_string)
    authorization = headers.get("authorization")
    in_header = None
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            in_header = credentials.strip()
    in_header = in_header or headers.get("x-api-key")
    if in_query is None:
        return in_header, False
    if in_header:
        raise _invalid_request("Send the API key once: in a header, or (a publishable key) in `?key=`.")
    return in_query, True


def _query_key(query_string: bytes) -> str | None:
    if b"key" not in query_string and b"%" not in query_string:  # the hot path: no query, or no key in it
        return None
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    values = [value for name, value in pairs if name == QUERY_KEY]
    if len(values) > 1:
        raise _invalid_request("Send the API key once: `?key=` appears more than once.")
    return values[0] if values else None


def _invalid_request(detail: str) -> HTTPException:
    return HTTPException(400, detail, headers={"WWW-Authenticate": f'{REALM}, error="invalid_request"'})


def _unauthenticated(detail: str, error: str | None = None) -> HTTPException:
    challenge = f"{REALM}, {error}" if error else REALM
    return HTTPException(401, detail, headers={"WWW-Authenticate": challenge})
