"""The ApiGate in front of a tiny ASGI app: keys and scopes by method, one token per request, and the
security headers on whatever comes back."""

from __future__ import annotations

import json
from typing import Any

import httpx
from starlette.types import Receive, Scope, Send

from activity_service.infrastructure.rate_limit import TokenBuckets
from activity_service.infrastructure.settings import ApiSettings, AuthSettings
from activity_service.interfaces.http.security.gate import ApiGate
from activity_service.interfaces.http.security.headers import API_CSP, SecurityHeaders
from activity_service.interfaces.http.security.policy import HttpSecurity

KEYS = [
    {"name": "writer", "key": "writer-key-0123456789", "scopes": ["activities:write"]},
    {"name": "reader", "key": "reader-key-0123456789", "scopes": ["activities:read"]},
]
WRITER = {"Authorization": "Bearer writer-key-0123456789"}
READER = {"X-API-Key": "reader-key-0123456789"}


async def echo_client(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with the client the gate found, or null outside /api."""
    client = scope.get("state", {}).get("client")
    body = json.dumps(None if client is None else {"name": client.name, "bucket": client.bucket})
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body.encode()})


def client(buckets: TokenBuckets | None = None, **auth: Any) -> httpx.AsyncClient:
    settings = AuthSettings.explicit(api_keys=json.dumps(KEYS), **auth)
    gate = ApiGate(
        echo_client,
        security=HttpSecurity.from_settings(settings, ApiSettings.explicit(trusted_proxies="127.0.0.1")),
        rate_limiter=buckets,
        per_event_paths={"/api/activities/batch"},
    )
    app = SecurityHeaders(gate)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 4000)), base_url="http://test"
    )


async def test_no_key_or_an_unknown_key_is_a_401_problem_with_a_challenge() -> None:
    async with client() as http:
        missing = await http.get("/api/activities")
        unknown = await http.get("/api/activities", headers={"Authorization": "Bearer nope-nope-nope-nope"})
        basic = await http.get("/api/activities", headers={"Authorization": "Basic d3JpdGVyOmtleQ=="})
    for response in (missing, unknown, basic):
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith('Bearer realm="activity-service"')
        assert response.json()["status"] == 401
    assert 'error="invalid_token"' in unknown.headers["www-authenticate"]


async def test_the_method_decides_the_scope() -> None:
    async with client() as http:
        assert (await http.get("/api/activities", headers=READER)).status_code == 200
        assert (await http.post("/api/activities", headers=WRITER)).status_code == 200
        read_only = await http.post("/api/activities", headers=READER)
        write_only = await http.get("/api/activities/x", headers=WRITER)
    assert read_only.status_code == write_only.status_code == 403
    assert 'error="insufficient_scope", scope="activities:write"' in read_only.headers["www-authenticate"]
    assert "activities:read" in write_only.json()["detail"]


async def test_the_route_gets_the_client_and_only_open_paths_need_no_key() -> None:
    async with client() as http:
        identified = await http.get("/api/activities", headers=READER)
        health = await http.get("/health")
        lookalike = await http.get("/apiary")
        elsewhere = await http.get("/apiary", headers=READER)
    assert identified.json() == {"name": "reader", "bucket": "key:reader"}
    assert health.status_code == 200
    assert health.json() is None
    assert lookalike.status_code == 401, "deny by default: a path not listed as open needs a key"
    assert elsewhere.status_code == 200


async def test_with_auth_off_the_client_is_its_address() -> None:
    async with client(enabled=False) as http:
        direct = await http.post("/api/activities")
        proxied = await http.post("/api/activities", headers={"X-Forwarded-For": "203.0.113.9"})
    assert direct.json()["bucket"] == "address:127.0.0.1"
    assert proxied.json()["bucket"] == "address:203.0.113.9"  # 127.0.0.1 is a trusted proxy here


async def test_each_request_spends_a_token_and_says_what_is_left() -> None:
    stopped_clock = TokenBuckets(rate=0.01, capacity=2, monotonic=lambda: 1_000.0)
    async with client(stopped_clock) as http:
        answers = [await http.post("/api/activities", headers=WRITER) for _ in range(3)]
        other_key = await http.get("/api/activities", headers=READER)
        batch = await http.post("/api/activities/batch", headers={"X-API-Key": "not-a-key"})
        first_of_batch = await http.post("/api/activities/batch", headers=WRITER)
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a.headers["ratelimit"] for a in answers] == [
        '"default";r=1;t=100',
        '"default";r=0;t=200',
        '"default";r=0;t=200',
    ]
    assert {a.headers["ratelimit-policy"] for a in answers} == {'"default";q=2;w=200'}
    refused = answers[2]
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "100"
    assert refused.json()["status"] == 429
    assert other_key.status_code == 200
    assert other_key.headers["ratelimit"] == '"default";r=1;t=100'
    assert batch.status_code == 401
    assert first_of_batch.status_code == 429, "a batch pays its first token at the gate too"


async def test_security_headers_are_on_every_answer() -> None:
    async with client() as http:
        for response in (await http.get("/health"), await http.get("/api/activities")):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["referrer-policy"] == "no-referrer"
            assert response.headers["content-security-policy"] == API_CSP
            assert response.headers["cache-control"] == "no-store"
