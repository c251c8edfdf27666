"""The API's edges in-process: a key with the right scope on every documented /api route, rate limits on a
clock that stands still, client addresses behind proxies, security headers and CORS."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import httpx

from activity_service.infrastructure.rate_limit import TokenBuckets
from tests.http.conftest import (
    ERASE,
    ERASER_KEY,
    FULL_KEY,
    KEYS,
    READ,
    READER_KEY,
    WRITE,
    WRITER_KEY,
    Fakes,
    bearer,
    serve,
    settings,
)

HASHED_KEY = "hashed-key-0123456789abcdef"
WITH_HASHED = [
    *KEYS,
    {
        "name": "hashed",
        "sha256": hashlib.sha256(HASHED_KEY.encode()).hexdigest(),
        "scopes": [WRITE, READ, ERASE],
    },
]
API_CSP = "default-src 'none'; frame-ancestors 'none'"


def stopped_clock(rate: float, burst: int) -> TokenBuckets:
    """Token buckets whose clock never moves: nothing refills during the test."""
    return TokenBuckets(rate, burst, monotonic=lambda: 5_000.0)


def body_for(method: str, path: str) -> dict[str, Any] | None:
    if method != "POST":
        return None
    event = {"userId": "u", "action": "security_check"}
    return {"activities": [event]} if path.endswith("/batch") else event


async def test_every_documented_api_route_needs_a_key_with_the_right_scope(fakes: Fakes) -> None:
    async with serve(fakes, settings(keys=WITH_HASHED), key=None) as http:
        spec = (await http.get("/openapi.json")).json()
        found = [
            (method.upper(), re.sub(r"\{[^}]+\}", "some-id", path))
            for path, methods in spec["paths"].items()
            if path.startswith("/api/")
            for method in methods
        ]
        assert {
            ("POST", "/api/activities"),
            ("POST", "/api/activities/batch"),
            ("GET", "/api/activities"),
            ("GET", "/api/activities/some-id"),
            ("GET", "/api/activities/some-id/status"),
            ("DELETE", "/api/users/some-id/activities"),
            ("GET", "/api/erasures/some-id"),
        } <= set(found)
        for method, path in found:
            # Erasure needs activities:erase (reading how one goes, too); any other GET activities:read,
            # anything else activities:write. Each key below lacks the scope its request needs.
            erasure = path.startswith(("/api/users/", "/api/erasures/"))
            right_key = ERASER_KEY if erasure else READER_KEY if method == "GET" else WRITER_KEY
            wrong_key = FULL_KEY if erasure else WRITER_KEY if method == "GET" else READER_KEY
            body = body_for(method, path)
            anonymous = await http.request(method, path, json=body)
            unknown = await http.request(method, path, json=body, headers=bearer("not-a-key-0123456789"))
            for refused in (anonymous, unknown):
                assert refused.status_code == 401, (method, path, refused.text)
                assert refused.headers["content-type"] == "application/problem+json"
                assert refused.headers["www-authenticate"].startswith('Bearer realm="activity-service"')
            assert 'error="invalid_token"' in unknown.headers["www-authenticate"]

            forbidden = await http.request(method, path, json=body, headers=bearer(wrong_key))
            assert forbidden.status_code == 403, (method, path, forbidden.text)
            assert forbidden.headers["content-type"] == "application/problem+json"
            assert 'error="insufficient_scope"' in forbidden.headers["www-authenticate"]

            if path == "/api/activities/stream":
                continue  # it never ends by itself: test_stream.py checks it is served to the right key
            for headers in (bearer(right_key), {"X-API-Key": right_key}, bearer(HASHED_KEY)):
                allowed = await http.request(method, path, json=body, headers=headers)
                assert allowed.status_code not in (401, 403), (method, path, headers, allowed.text)
        for path in ("/health", "/health/ready", "/docs", "/openapi.json", "/metrics"):
            assert (await http.get(path)).status_code == 200, path
    assert len(fakes.publisher.published) == 3 * 2  # each POST route, once per accepted way of sending a key


async def test_docs_and_metrics_can_require_a_key(fakes: Fakes) -> None:
    config = settings(auth={"protect_docs": True, "protect_metrics": True})
    async with serve(fakes, config, key=None) as http:
        for path in ("/docs", "/openapi.json", "/metrics"):
            refused = await http.get(path)
            assert refused.status_code == 401 and "www-authenticate" in refused.headers, path
            assert (await http.get(path, headers=bearer(READER_KEY))).status_code == 200, path
        assert (await http.get("/health")).status_code == 200


async def test_a_burst_one_over_the_limit_gets_exactly_one_429_and_other_keys_are_unaffected(
    fakes: Fakes,
) -> None:
    async with serve(fakes, rate_limiter=stopped_clock(0.01, 5), key=WRITER_KEY) as http:
        burst = [await http.post("/api/activities", json={"userId": "u", "action": "a"}) for _ in range(6)]
        assert [r.status_code for r in burst] == [202] * 5 + [429]
        assert [r.headers["ratelimit"] for r in burst[:5]] == [
            f'"default";r={n};t={100 * (5 - n)}' for n in (4, 3, 2, 1, 0)
        ]
        assert {r.headers["ratelimit-policy"] for r in burst} == {'"default";q=5;w=500'}
        refused = burst[-1]
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["status"] == 429
        assert refused.headers["retry-after"] == "100"
        assert refused.headers["ratelimit"] == '"default";r=0;t=500'
        reader = await http.get("/api/activities", headers=bearer(READER_KEY))
        assert reader.headers["ratelimit"] == '"default";r=4;t=100', "another key has its own budget"
    assert len(fakes.publisher.published) == 5


async def test_a_batch_spends_a_token_per_event_and_one_larger_than_the_burst_is_a_413(fakes: Fakes) -> None:
    three = {"activities": [{"userId": "u", "action": "a"}] * 3}
    async with serve(fakes, rate_limiter=stopped_clock(0.01, 5), key=WRITER_KEY) as http:
        too_big = await http.post(
            "/api/activities/batch", json={"activities": [{"userId": "u", "action": "a"}] * 6}
        )
        assert too_big.status_code == 413 and too_big.json()["limit"] == 5  # it still paid its first token
        first = await http.post("/api/activities/batch", json=three)
        assert first.status_code == 202 and first.headers["ratelimit"].startswith('"default";r=1;')
        second = await http.post("/api/activities/batch", json=three)
        assert second.status_code == 429 and second.headers["ratelimit"].startswith('"default";r=0;')
    assert len(fakes.publisher.published) == 3


async def test_x_forwarded_for_counts_only_from_a_trusted_proxy(fakes: Fakes) -> None:
    through_proxy = {"X-Forwarded-For": "198.51.100.66, 203.0.113.9"}  # the client wrote the first one
    async with serve(fakes) as direct:
        await direct.post("/api/activities", json={"userId": "u", "action": "direct"}, headers=through_proxy)
    async with serve(fakes, settings(api={"trusted_proxies": "127.0.0.1"})) as proxied:
        await proxied.post(
            "/api/activities", json={"userId": "u", "action": "proxied"}, headers=through_proxy
        )
    assert {a.action: a.ip_address for a in fakes.publisher.published} == {
        "direct": "127.0.0.1",
        "proxied": "203.0.113.9",
    }


async def test_with_auth_off_the_budget_is_per_client_address(fakes: Fakes) -> None:
    config = settings(auth={"enabled": False}, api={"trusted_proxies": "127.0.0.1"})
    async with serve(fakes, config, rate_limiter=stopped_clock(0.01, 2), key=None) as http:

        async def post_from(address: str) -> int:
            response = await http.post(
                "/api/activities", json={"userId": "u", "action": "a"}, headers={"X-Forwarded-For": address}
            )
            return response.status_code

        assert [await post_from("198.51.100.1") for _ in range(3)] == [202, 202, 429]
        assert await post_from("198.51.100.2") == 202


async def test_every_answer_carries_security_headers_and_the_request_id(http: httpx.AsyncClient) -> None:
    answers = [
        await http.get("/api/activities", headers={"X-Request-ID": "req-7"}),
        await http.get("/api/no-such-thing"),
        await http.get("/api/activities", headers=bearer("wrong-key-0123456789")),
        await http.post("/api/activities", json={}),
        await http.get("/health"),
    ]
    for response in answers:
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["content-security-policy"] == API_CSP
        assert response.headers["cache-control"] == "no-store"
        assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", response.headers["x-request-id"])
    assert answers[0].headers["x-request-id"] == "req-7"
    unsafe = await http.get("/health", headers={"X-Request-ID": "bad id\twith tab"})
    assert unsafe.headers["x-request-id"] != "bad id\twith tab"


async def test_cors_follows_the_allow_list(fakes: Fakes) -> None:
    allowed = "https://dashboard.example.com"
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    async with serve(fakes, settings(api={"cors_origins": allowed})) as http:
        ok = await http.options("/api/activities", headers={"Origin": allowed, **preflight})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == allowed
        evil = await http.options("/api/activities", headers={"Origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in evil.headers
        cross = await http.get("/api/activities", headers={"Origin": allowed})
        assert cross.headers["access-control-allow-origin"] == allowed
        assert "ratelimit" in cross.headers["access-control-expose-headers"].lower()
    async with serve(fakes) as no_cors:
        answer = await no_cors.get("/api/activities", headers={"Origin": allowed})
        assert answer.status_code == 200 and "access-control-allow-origin" not in answer.headers


async def test_a_key_given_as_its_sha256_works_like_any_other(fakes: Fakes) -> None:
    async with serve(fakes, settings(keys=WITH_HASHED), key=HASHED_KEY) as http:
        assert (await http.post("/api/activities", json={"userId": "u", "action": "a"})).status_code == 202
    async with serve(fakes, key=FULL_KEY) as http:
        assert (await http.get("/api/activities")).status_code == 200
