"""Routing, health, readiness and the documents the API serves, in-process."""

from __future__ import annotations

import json
import re
from urllib.parse import urljoin

import httpx

from tests.http.conftest import Fakes


async def test_unknown_paths_and_methods_are_problems(http: httpx.AsyncClient) -> None:
    missing = await http.get("/nowhere")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    put = await http.put("/api/activities", json={})
    assert put.status_code == 405 and put.headers["allow"] == "GET, POST"
    assert put.headers["content-type"] == "application/problem+json"
    delete = await http.delete("/api/activities/x")
    assert delete.status_code == 405 and delete.headers["allow"] == "GET"


async def test_a_method_no_route_serves_is_a_405_whatever_the_key_says(http: httpx.AsyncClient) -> None:
    """No key can make TRACE or PUT anything but a 405: told before any key is read (a key sent twice,
    an unknown one or none at all)."""
    for headers, query in [
        ({"X-API-Key": "unknown-key-0123456789abcdef"}, ""),
        ({"Authorization": "Bearer unknown-key-0123456789abcdef", "X-API-Key": "other-0123456789abcdef"}, ""),
        ({"Authorization": None}, ""),  # no key at all (the client's default key removed)
        ({}, "?key=some-key-0123456789abcdef"),  # the default key and one in the query
    ]:
        for method, path, allow in [
            ("TRACE", "/api/activities", "GET, POST"),
            ("PUT", "/api/activities/batch", "GET, POST"),
            ("DELETE", "/api/activities", "GET, POST"),  # DELETE is served elsewhere (erasures)
        ]:
            sent = {k: v for k, v in headers.items() if v is not None}
            request = http.build_request(method, path + query, headers=sent)
            if headers.get("Authorization", "") is None:
                del request.headers["Authorization"]
            answer = await http.send(request)
            assert answer.status_code == 405, (method, path, headers, answer.text)
            assert answer.headers["allow"] == allow
            assert answer.headers["content-type"] == "application/problem+json"
    # A method some route serves still needs the key first.
    anonymous = http.build_request("POST", "/api/activities", json={"userId": "u", "action": "a"})
    del anonymous.headers["Authorization"]
    assert (await http.send(anonymous)).status_code == 401


async def test_health_checks_nothing_and_readiness_names_the_failing_dependency(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    assert (await http.get("/health")).json() == {"status": "ok", "service": "activity-service"}
    ready = await http.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"kafka": "ok", "mongodb": "ok"}}
    fakes.repository.down = True
    down = await http.get("/health/ready")
    assert down.status_code == 503
    assert down.json() == {"status": "unavailable", "checks": {"kafka": "ok", "mongodb": "unavailable"}}
    assert (await http.get("/health")).status_code == 200


async def test_swagger_ui_is_served_from_the_installed_bundle_with_a_strict_csp(
    http: httpx.AsyncClient,
) -> None:
    page = await http.get("/docs")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert (
        "script-src 'self' 'sha256-" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    )
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    for asset in assets:
        path = urljoin("/docs", asset)  # named from the page, so that a path prefix keeps working
        assert path.startswith("/docs/static/"), f"{asset} would come from elsewhere (the internet?)"
        assert (await http.get(path)).status_code == 200, asset


async def test_the_openapi_document_describes_what_is_answered(http: httpx.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    post = spec["paths"]["/api/activities"]["post"]
    assert {"202", "400", "401", "403", "413", "415", "429", "503"} <= set(post["responses"])
    assert set(spec["paths"]) >= {
        "/api/activities",
        "/api/activities/{activity_id}",
        "/health",
        "/health/ready",
    }
    schemas = spec["components"]["schemas"]
    assert schemas["ActivityIn"]["examples"]
    assert schemas["ActivityIn"]["additionalProperties"] is False
    listing = spec["paths"]["/api/activities"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {
        "userId",
        "action",
        "startDate",
        "endDate",
        "page",
        "limit",
        "cursor",
        "includeTotal",
    }
    assert '"422"' not in json.dumps(spec["paths"]), "the service answers 400 for invalid input, not 422"
    assert "HTTPValidationError" not in schemas
    assert set(schemas["ActivityOut"]["properties"]) == {
        "source",
        "id",
        "userId",
        "action",
        "timestamp",
        "metadata",
        "ipAddress",
        "receivedAt",
        "originalTimestamp",
        "sentAt",
        "traceId",
    }
