"""Edges that need no server: security headers a route may override, the docs page's CSP, rate-limit
headers and batch costs, and error bodies that name no internal host."""

from __future__ import annotations

import base64
import hashlib
import re
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from starlette.types import Receive, Scope, Send

from activity_service.application.check_readiness import CheckReadiness
from activity_service.application.record_batch import BatchTooLarge
from activity_service.domain.errors import PublishUnavailable
from activity_service.infrastructure.rate_limit import TokenBuckets, Verdict
from activity_service.infrastructure.settings import AuthSettings, Settings
from activity_service.interfaces.http import problems
from activity_service.interfaces.http.app import create_app
from activity_service.interfaces.http.docs import docs_csp
from activity_service.interfaces.http.route_table import RouteTable
from activity_service.interfaces.http.routes import health
from activity_service.interfaces.http.security.headers import SecurityHeaders
from activity_service.interfaces.http.security.keys import Client
from activity_service.interfaces.http.security.throttle import rate_limit_headers, spend


async def with_own_csp(scope: Scope, receive: Receive, send: Send) -> None:
    headers = [(b"content-security-policy", b"default-src 'self'")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"<html></html>"})


async def test_a_route_may_set_its_own_csp_and_static_files_may_be_cached() -> None:
    app = SecurityHeaders(with_own_csp)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        page = await http.get("/docs")
        asset = await http.get("/docs/static/swagger-ui.css")
    assert page.headers.get_list("content-security-policy") == ["default-src 'self'"]
    assert page.headers["cache-control"] == "no-store"
    assert "cache-control" not in asset.headers
    assert asset.headers["x-content-type-options"] == "nosniff"


def test_the_docs_csp_allows_exactly_the_inline_scripts_of_the_page() -> None:
    html = "<script src='/docs/static/a.js'></script><script>\nconst ui = 1;\n</script>"
    csp = docs_csp(html)
    digest = base64.b64encode(hashlib.sha256(b"\nconst ui = 1;\n").digest()).decode()
    assert f"script-src 'self' 'sha256-{digest}';" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert re.findall(r"https?:", csp) == []


def test_rate_limit_headers_follow_the_ietf_draft() -> None:
    buckets = TokenBuckets(rate=50, capacity=200)
    verdict = Verdict(allowed=True, remaining=120, reset_after=1.6, retry_after=0)
    assert rate_limit_headers(verdict, buckets) == {
        "RateLimit-Policy": '"default";q=200;w=4',
        "RateLimit": '"default";r=120;t=2',
    }


async def test_a_batch_spends_one_token_per_event_and_never_more_than_the_burst() -> None:
    buckets = TokenBuckets(rate=0.01, capacity=5)
    client = Client.for_key("k", ["activities:write"])
    assert (await spend(buckets, client, 3))["RateLimit"].startswith('"default";r=2;')
    with pytest.raises(HTTPException) as refused:
        await spend(buckets, client, 3)  # two are left: nothing is taken
    assert refused.value.status_code == 429
    assert (await spend(buckets, client, 2))["RateLimit"].startswith('"default";r=0;')
    with pytest.raises(BatchTooLarge):
        await spend(buckets, Client.for_key("other", ["activities:write"]), 6)
    assert await spend(None, client, 1_000_000) == {}


def app_failing_with(reason: str) -> FastAPI:
    app = FastAPI()
    problems.install(app, problems.handlers(RouteTable()))

    @app.post("/publish")
    async def publish() -> None:
        raise PublishUnavailable(reason, retry_after=2)

    async def database_ping() -> None:
        raise ConnectionError("mongo-0.mongo.svc.cluster.local:27017: [Errno 111] Connection refused")

    async def broker_ping() -> None:
        return None

    app.include_router(health.router)
    readiness = CheckReadiness({"kafka": broker_ping, "mongodb": database_ping}, timeout_seconds=1)
    app.state.services = SimpleNamespace(readiness=readiness)
    return app


async def test_error_bodies_name_no_internal_host() -> None:
    app = app_failing_with("the event log refused the events: KafkaConnectionError: kafka-0.internal:9092")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        unavailable = await http.post("/publish")
        ready = await http.get("/health/ready")
    assert unavailable.status_code == 503
    assert unavailable.json()["detail"].startswith("Nothing was accepted: the event log refused the events.")
    assert "kafka-0" not in unavailable.text and "9092" not in unavailable.text
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"kafka": "ok", "mongodb": "unavailable"}
    assert "mongo-0" not in ready.text and "27017" not in ready.text


async def test_an_unexpected_error_answers_500_without_a_trace() -> None:
    app = FastAPI()
    problems.install(app, problems.handlers(RouteTable()))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals at db-7.internal")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "db-7" not in response.text and "Traceback" not in response.text


async def test_an_unexpected_error_in_a_route_answers_like_any_other_with_headers_and_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The service's own middleware stack (create_app), one route that fails in an unforeseen way.
    app = create_app(Settings.explicit(auth=AuthSettings.explicit(enabled=False)))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals at db-7.internal")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.get("/boom", headers={"X-Request-ID": "req-42"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == "req-42"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert "db-7" not in response.text and "Traceback" not in response.text
    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [RuntimeError]  # logged once


async def test_a_405_lists_every_method_the_path_allows_not_only_the_first_routes() -> None:
    app = FastAPI()
    routes = RouteTable()
    problems.install(app, problems.handlers(routes))

    @app.get("/things")
    async def list_things() -> None: ...

    @app.post("/things")
    async def add_thing() -> None: ...

    @app.get("/things/{thing}")
    async def one_thing(thing: str) -> None: ...

    routes.load(app.router.routes)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        put = await http.put("/things")
        delete = await http.delete("/things/a")
    assert put.status_code == 405 and put.headers["allow"] == "GET, POST"
    assert put.headers["content-type"] == "application/problem+json"
    assert delete.status_code == 405 and delete.headers["allow"] == "GET"
