"""Authorization is decided on the path the router routes, and denied by default: an app mounted under a
prefix (or served under a root path) needs a key on every route but the few open ones, exactly as at
the root. (Served with ``uvicorn --root-path``: tests/e2e/test_security.py.)"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urljoin

import httpx
from starlette.applications import Starlette
from starlette.routing import Mount

from activity_service.interfaces.http import explorer
from activity_service.interfaces.http.app import create_app
from tests.http.conftest import FULL_KEY, PEER, READER_KEY, Fakes, bearer, settings

EVENT = {"userId": "u", "action": "mounted"}


@asynccontextmanager
async def mounted(fakes: Fakes, prefix: str = "/svc", **config: object) -> AsyncIterator[httpx.AsyncClient]:
    """The app mounted under ``prefix`` of another ASGI app (its lifespan run by hand: Starlette does not
    run a mounted app's), and a client that sends no key."""
    app_settings = settings(**config)  # type: ignore[arg-type]
    inner = create_app(app_settings, services=fakes.services(app_settings.ingest.max_batch_items))
    outer = Starlette(routes=[Mount(prefix, app=inner)])
    async with inner.router.lifespan_context(inner):
        transport = httpx.ASGITransport(app=outer, client=PEER)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client


async def test_a_mounted_app_refuses_every_api_route_without_a_key(fakes: Fakes) -> None:
    async with mounted(fakes) as http:
        listing = await http.get("/svc/api/activities")
        assert listing.status_code == 401, listing.text
        assert listing.headers["www-authenticate"].startswith('Bearer realm="activity-service"')
        assert (await http.post("/svc/api/activities", json=EVENT)).status_code == 401
        assert (await http.post("/svc/api/activities/batch", json={"activities": [EVENT]})).status_code == 401
        assert (await http.get("/svc/api/activities/x/status")).status_code == 401
        assert fakes.publisher.published == []

        assert (await http.get("/svc/api/activities", headers=bearer(READER_KEY))).status_code == 200
        accepted = await http.post("/svc/api/activities", json=EVENT, headers=bearer(FULL_KEY))
        assert accepted.status_code == 202
        assert accepted.headers["location"] == f"/svc/api/activities/{accepted.json()['id']}"  # reachable
        assert (await http.get("/svc/health")).status_code == 200
        assert (await http.get("/svc/health/ready")).status_code == 200
    assert [a.action for a in fakes.publisher.published] == ["mounted"]


async def test_the_ingest_guard_and_the_scopes_apply_under_a_prefix_too(fakes: Fakes) -> None:
    async with mounted(fakes, ingest={"max_event_bytes": 256}) as http:
        big = {**EVENT, "metadata": {"pad": "x" * 400}}
        too_large = await http.post("/svc/api/activities", json=big, headers=bearer(FULL_KEY))
        assert too_large.status_code == 413, too_large.text
        not_json = await http.post(
            "/svc/api/activities",
            content=b"userId=u",
            headers={**bearer(FULL_KEY), "Content-Type": "text/plain"},
        )
        assert not_json.status_code == 415
        reader_posts = await http.post("/svc/api/activities", json=EVENT, headers=bearer(READER_KEY))
        assert reader_posts.status_code == 403
    assert fakes.publisher.published == []


async def test_only_the_listed_paths_are_open_and_every_other_needs_a_key(fakes: Fakes) -> None:
    async with mounted(fakes, prefix="/") as http:
        for path in ("/health", "/health/ready", "/docs", "/openapi.json", "/metrics", "/explorer"):
            assert (await http.get(path)).status_code == 200, path
        for path in ("/nowhere", "/api", "/api/", "/health/../api/activities", "/apix", "/health/ready/x"):
            refused = await http.get(path)
            assert refused.status_code == 401, (path, refused.status_code)
        assert (await http.get("/nowhere", headers=bearer(READER_KEY))).status_code == 404


async def test_protected_docs_need_a_key_but_the_bundle_s_static_files_stay_open(fakes: Fakes) -> None:
    async with mounted(fakes, "/svc", auth={"protect_docs": True, "protect_metrics": True}) as http:
        for path in ("/svc/docs", "/svc/openapi.json", "/svc/metrics"):
            assert (await http.get(path)).status_code == 401, path
            assert (await http.get(path, headers=bearer(READER_KEY))).status_code == 200, path
        assert (await http.get("/svc/docs/static/swagger-ui.css")).status_code == 200
        assert (await http.get("/svc/explorer")).status_code == 200  # static, no data: open like the bundle


async def test_the_docs_and_explorer_pages_load_their_files_and_the_api_under_the_prefix(
    fakes: Fakes,
) -> None:
    """A page that named its files from the root (/docs/static/..., /api/...) would load nothing behind
    a proxy that serves the app under a prefix: each name must resolve, against the page's URL, to a
    path under the prefix that answers."""
    async with mounted(fakes, "/svc") as http:
        for page in ("/svc/docs", "/svc/explorer"):
            html = (await http.get(page)).text
            named = re.findall(r'(?:src|href)="([^"#][^"]*)"', html) + re.findall(r"url: '([^']+)'", html)
            named = [n for n in named if not n.startswith("data:")]
            assert named, page
            for name in named:
                path = urljoin(page, name)
                assert path.startswith("/svc/"), (page, name)
                assert (await http.get(path)).status_code == 200, (page, name, path)
    scripts = (Path(explorer.__file__).parent / "static").glob("*.js")
    rooted = [(s.name, m) for s in scripts for m in re.findall(r'"(/api/[^"]*)"', s.read_text())]
    assert rooted == [], "the explorer's calls must be relative to the page, or they miss the prefix"


async def test_try_it_out_calls_the_api_under_the_prefix_not_the_origin_s_root(fakes: Fakes) -> None:
    """Swagger UI sends each request to the document's first server, resolved against the document's
    URL; with none it calls the origin's root, and the key pasted into the page goes to another app."""
    async with mounted(fakes, "/svc") as http:
        schema = (await http.get("/svc/openapi.json")).json()
        server = urljoin("http://host/svc/openapi.json", schema["servers"][0]["url"]).rstrip("/")
        assert server == "http://host/svc"
        listed = await http.get(urljoin(server + "/", "api/activities").removeprefix("http://host"))
        assert listed.status_code == 401  # the API's own answer: it is there, and wants the key
