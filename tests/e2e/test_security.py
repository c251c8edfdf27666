"""Security of the real API process: a key with the right scope on every /api route, rate limits per key
(in one process and shared by two through Redis), client addresses behind proxies, fields only the
server sets, the headers on every answer, and refusing to start open by mistake."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.processes import API_KEY, CLI, Deployment, api, free_port, get, wait_until
from tests.redis_server import redis_server

WRITE, READ = "activities:write", "activities:read"
READER_KEY = "reader-key-0123456789abcdef"
WRITER_KEY = "writer-key-0123456789abcdef"
HASHED_KEY = "hashed-key-0123456789abcdef"
KEYS = json.dumps(
    [
        {"name": "e2e", "key": API_KEY, "scopes": [WRITE, READ]},
        {"name": "reader", "key": READER_KEY, "scopes": [READ]},
        {"name": "writer", "key": WRITER_KEY, "scopes": [WRITE]},
        {
            "name": "hashed",
            "sha256": hashlib.sha256(HASHED_KEY.encode()).hexdigest(),
            "scopes": [WRITE, READ],
        },
    ]
)
SERVER_OWNED = ["receivedAt", "ipAddress", "originalTimestamp", "traceId", "trace_id", "traceparent", "_id"]
API_CSP = "default-src 'none'; frame-ancestors 'none'"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def client_with(base_url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers=bearer(key), timeout=30)


def event(**fields: Any) -> dict[str, Any]:
    return {"userId": f"user-{uuid.uuid4().hex[:8]}", "action": "security_check", **fields}


def body_for(method: str, path: str) -> dict[str, Any] | None:
    if method != "POST":
        return None
    return {"activities": [event()]} if path.endswith("/batch") else event()


def operations(base_url: str) -> list[tuple[str, str]]:
    """Every operation under /api that the API documents, path parameters filled in."""
    spec = get(base_url, "/openapi.json").json()
    return [
        (method.upper(), re.sub(r"\{[^}]+\}", "some-id", path))
        for path, methods in spec["paths"].items()
        if path.startswith("/api/")
        for method in methods
    ]


def test_every_api_route_needs_a_key_with_the_right_scope(deployment: Deployment) -> None:
    _, base_url = deployment.start_api(AUTH_API_KEYS=KEYS)
    found = operations(base_url)
    assert {
        ("POST", "/api/activities"),
        ("POST", "/api/activities/batch"),
        ("GET", "/api/activities"),
        ("GET", "/api/activities/some-id"),
    } <= set(found)
    with httpx.Client(base_url=base_url, timeout=30) as http:
        for method, path in found:
            body = body_for(method, path)
            anonymous = http.request(method, path, json=body)
            unknown = http.request(method, path, json=body, headers=bearer("not-a-key-0123456789"))
            for refused in (anonymous, unknown):
                assert refused.status_code == 401, (method, path, refused.text)
                assert refused.headers["content-type"] == "application/problem+json"
                assert refused.headers["www-authenticate"].startswith('Bearer realm="activity-service"')
            assert 'error="invalid_token"' in unknown.headers["www-authenticate"]

            wrong_key = WRITER_KEY if method == "GET" else READER_KEY
            forbidden = http.request(method, path, json=body, headers=bearer(wrong_key))
            assert forbidden.status_code == 403, (method, path, forbidden.text)
            assert forbidden.headers["content-type"] == "application/problem+json"
            assert 'error="insufficient_scope"' in forbidden.headers["www-authenticate"]

            right_key = READER_KEY if method == "GET" else WRITER_KEY
            for headers in (bearer(right_key), {"X-API-Key": right_key}, bearer(HASHED_KEY)):
                allowed = http.request(method, path, json=body, headers=headers)
                assert allowed.status_code not in (401, 403), (method, path, headers, allowed.text)

        # A key given only as its SHA-256 works like any other.
        assert http.post("/api/activities", json=event(), headers=bearer(HASHED_KEY)).status_code == 202
        # Health, readiness and (by default) the docs are open.
        for path in ("/health", "/health/ready", "/docs", "/openapi.json"):
            assert http.get(path).status_code == 200, path


def test_docs_can_require_a_key(deployment: Deployment) -> None:
    _, base_url = deployment.start_api(AUTH_PROTECT_DOCS="true")
    with httpx.Client(base_url=base_url, timeout=30) as http:
        for path in ("/docs", "/openapi.json"):
            refused = http.get(path)
            assert refused.status_code == 401
            assert "www-authenticate" in refused.headers
            assert http.get(path, headers=bearer(API_KEY)).status_code == 200
        assert http.get("/health").status_code == 200


def test_a_burst_one_over_the_limit_gets_exactly_one_429_and_other_keys_are_unaffected(
    deployment: Deployment,
) -> None:
    # Five tokens, refilled at one per 100 s: nothing refills during the test.
    _, base_url = deployment.start_api(
        AUTH_API_KEYS=KEYS, RATE_LIMIT_EVENTS_PER_SECOND="0.01", RATE_LIMIT_BURST="5"
    )
    with client_with(base_url, WRITER_KEY) as http, ThreadPoolExecutor(6) as pool:
        burst = list(pool.map(lambda _: http.post("/api/activities", json=event()), range(6)))
        codes = sorted(r.status_code for r in burst)
        assert codes == [202] * 5 + [429]
        accepted = [r for r in burst if r.status_code == 202]
        assert sorted(r.headers["ratelimit"].split(";")[1] for r in accepted) == [f"r={n}" for n in range(5)]
        assert {r.headers["ratelimit-policy"] for r in burst} == {'"default";q=5;w=500'}

        [refused] = [r for r in burst if r.status_code == 429]
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["status"] == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 100
        policy, remaining, reset = refused.headers["ratelimit"].split(";")
        assert (policy, remaining) == ('"default"', "r=0")
        assert 400 < int(reset.removeprefix("t=")) <= 500
        assert (
            http.get("/api/activities", headers=bearer(READER_KEY))
            .headers["ratelimit"]
            .startswith('"default";r=4;')
        ), "another key has its own budget"

    # A batch spends one token per event; one larger than the burst could never pass (413, and like any
    # request it costs a token); one that does not fit is refused and costs only its first token.
    with client_with(base_url, HASHED_KEY) as http:
        too_big = http.post("/api/activities/batch", json={"activities": [event() for _ in range(6)]})
        assert too_big.status_code == 413
        assert too_big.json()["limit"] == 5
        three = {"activities": [event() for _ in range(3)]}
        first = http.post("/api/activities/batch", json=three)
        assert first.status_code == 202
        assert first.headers["ratelimit"].startswith('"default";r=1;')
        second = http.post("/api/activities/batch", json=three)
        assert second.status_code == 429
        assert second.headers["ratelimit"].startswith('"default";r=0;')


@pytest.fixture
def redis_uri(tmp_path: Path) -> Iterator[str]:
    with redis_server(tmp_path) as uri:
        yield uri


def test_two_api_processes_sharing_redis_enforce_one_budget(deployment: Deployment, redis_uri: str) -> None:
    limits = {
        "AUTH_API_KEYS": KEYS,
        "RATE_LIMIT_EVENTS_PER_SECOND": "0.01",
        "RATE_LIMIT_BURST": "6",
        "RATE_LIMIT_STORAGE_URI": redis_uri,
    }
    _, first = deployment.start_api(**limits)
    _, second = deployment.start_api(**limits)
    with client_with(first, WRITER_KEY) as a, client_with(second, WRITER_KEY) as b:
        codes = [(a if i % 2 else b).post("/api/activities", json=event()).status_code for i in range(7)]
        assert codes == [202] * 6 + [429]
        assert a.post("/api/activities", json=event()).status_code == 429
        assert b.post("/api/activities", json=event(), headers=bearer(HASHED_KEY)).status_code == 202


def test_x_forwarded_for_counts_only_from_a_trusted_proxy(deployment: Deployment) -> None:
    deployment.start_consumer()
    _, direct = deployment.start_api()
    _, proxied = deployment.start_api(API_TRUSTED_PROXIES="127.0.0.1")
    spoofed = {"X-Forwarded-For": "203.0.113.9"}
    through_proxy = {"X-Forwarded-For": "198.51.100.66, 203.0.113.9"}  # the client wrote the first one
    direct_id, proxied_id = f"xff-direct-{uuid.uuid4().hex[:8]}", f"xff-proxied-{uuid.uuid4().hex[:8]}"
    with api(direct) as http:
        assert http.post("/api/activities", json=event(id=direct_id), headers=spoofed).status_code == 202
    with api(proxied) as http:
        assert (
            http.post("/api/activities", json=event(id=proxied_id), headers=through_proxy).status_code == 202
        )

    def stored_address(event_id: str) -> str | None:
        wait_until(
            lambda: get(direct, f"/api/activities/{event_id}").status_code == 200,
            60,
            f"{event_id} to be stored",
            logs=deployment.logs,
        )
        return get(direct, f"/api/activities/{event_id}").json()["ipAddress"]  # type: ignore[no-any-return]

    assert stored_address(direct_id) == "127.0.0.1"
    assert stored_address(proxied_id) == "203.0.113.9"


def test_with_auth_off_the_budget_is_per_client_address(deployment: Deployment) -> None:
    _, base_url = deployment.start_api(
        AUTH_ENABLED="false",
        API_TRUSTED_PROXIES="127.0.0.1",
        RATE_LIMIT_EVENTS_PER_SECOND="0.01",
        RATE_LIMIT_BURST="2",
    )
    with httpx.Client(base_url=base_url, timeout=30) as http:

        def post_from(address: str) -> int:
            return http.post(
                "/api/activities", json=event(), headers={"X-Forwarded-For": address}
            ).status_code

        assert [post_from("198.51.100.1") for _ in range(3)] == [202, 202, 429]
        assert post_from("198.51.100.2") == 202


def test_clients_cannot_set_server_owned_fields(deployment: Deployment) -> None:
    _, base_url = deployment.start_api()
    with api(base_url) as http:
        for field in SERVER_OWNED:
            single = http.post("/api/activities", json=event(**{field: "forged"}))
            assert single.status_code == 400, field
            assert single.json()["errors"] == [{"field": field, "message": "is not a known field"}]
        items = [event(**{field: "forged"}) for field in SERVER_OWNED] + [event(id=f"ok-{uuid.uuid4().hex}")]
        batch = http.post("/api/activities/batch", json={"activities": items})
    assert batch.status_code == 202
    results = batch.json()["results"]
    assert [r["status"] for r in results] == ["rejected"] * len(SERVER_OWNED) + ["accepted"]
    assert [r["errors"][0]["field"] for r in results[:-1]] == SERVER_OWNED


def run_api(deployment: Deployment, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "api", "--port", str(free_port())],
        env=deployment.env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_api_refuses_to_start_with_auth_on_and_no_keys(deployment: Deployment) -> None:
    refused = run_api(deployment, AUTH_ENABLED="true", AUTH_API_KEYS="[]")
    assert refused.returncode != 0
    assert "refusing to start" in refused.stderr
    assert "AUTH_API_KEYS" in refused.stderr
    assert "Traceback" not in refused.stderr

    secret = "do-not-print-me-0123456789"
    malformed = run_api(deployment, AUTH_API_KEYS=f'[{{"name": "x", "key": "{secret}"')
    assert malformed.returncode == 2
    assert "api_keys" in malformed.stderr and "not valid JSON" in malformed.stderr
    assert secret not in malformed.stderr + malformed.stdout


def test_every_answer_carries_security_headers_and_cors_follows_the_allow_list(
    deployment: Deployment,
) -> None:
    allowed = "https://dashboard.example.com"
    _, base_url = deployment.start_api(API_CORS_ORIGINS=allowed)
    with api(base_url) as http:
        listing = http.get("/api/activities")
        not_found = http.get("/api/no-such-thing")
        refused = http.get("/api/activities", headers={"Authorization": "Bearer wrong-key-0123456789"})
        for response in (listing, not_found, refused):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["referrer-policy"] == "no-referrer"
            assert response.headers["content-security-policy"] == API_CSP
            assert response.headers["cache-control"] == "no-store"
        assert not_found.status_code == 404
        assert not_found.headers["content-type"] == "application/problem+json"

        docs = http.get("/docs")
        csp = docs.headers["content-security-policy"]
        assert "script-src 'self' 'sha256-" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp

        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        }
        ok = http.options("/api/activities", headers={"Origin": allowed, **preflight})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == allowed
        evil = http.options("/api/activities", headers={"Origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in evil.headers
        cross = http.get("/api/activities", headers={"Origin": allowed})
        assert cross.headers["access-control-allow-origin"] == allowed
        assert "ratelimit" in cross.headers["access-control-expose-headers"].lower()

    _, no_cors = deployment.start_api()
    with api(no_cors) as http:
        answer = http.get("/api/activities", headers={"Origin": allowed})
        assert answer.status_code == 200
        assert "access-control-allow-origin" not in answer.headers
