"""The explorer page in a real browser: Debian's Chromium (``apt-get install chromium``; ``make
deps-system`` does it) driven by Playwright, over the real API and consumer processes of one deployment
per store, seeded once per module. Playwright's own browser download is not used."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, sync_playwright

from activity_service.domain.times import to_iso
from activity_service.interfaces.http.app import create_app
from tests.conftest import Stack
from tests.e2e.processes import API_KEY, Deployment, api, forget, free_port, prepare, total, wait_until
from tests.http.conftest import Fakes
from tests.http.conftest import settings as http_settings

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
LAPTOP = {"width": 1366, "height": 768}
TIMEZONE = "Europe/Berlin"  # not UTC, so that a page confusing local time and UTC is caught
READER_KEY = "browser-reader-key-0123456789"
KEYS = json.dumps(
    [
        {"name": "e2e", "key": API_KEY, "scopes": ["activities:write", "activities:read"]},
        {"name": "explorer", "key": READER_KEY, "scopes": ["activities:read"]},
    ]
)


def in_thread(work: Coroutine[Any, Any, None]) -> None:
    """Runs ``work`` on a loop of its own: sync Playwright keeps an event loop running in this thread."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, work).result()


@dataclass(frozen=True)
class Site:
    base_url: str
    seeded_at: datetime
    deployment: Deployment

    @property
    def explorer(self) -> str:
        return f"{self.base_url}/explorer"


def seed(now: datetime) -> list[dict[str, object]]:
    """42 activities of alice (28 of them view or buy), 15 of bob and one whose text is markup; all in the
    last three hours, so the chart's default range (the last 24 hours) holds every one."""
    actions = ["view", "buy", "share"]
    items: list[dict[str, object]] = [
        {
            "id": f"alice-{i:02d}",
            "userId": "alice",
            "action": actions[i % 3],
            "timestamp": to_iso(now - timedelta(minutes=3 * i + 1)),
            "metadata": {"path": f"/page/{i}"},
        }
        for i in range(42)
    ]
    items += [
        {
            "id": f"bob-{i:02d}",
            "userId": "bob",
            "action": "view",
            "timestamp": to_iso(now - timedelta(minutes=7 * i + 2)),
        }
        for i in range(15)
    ]
    items.append(
        {
            "id": "markup-1",
            "userId": "mallory",
            "action": '<img src=x onerror="document.title=1">',
            "timestamp": to_iso(now - timedelta(minutes=30)),
            "metadata": {"note": "<script>document.title=2</script>"},
        }
    )
    return items


@pytest.fixture(scope="package", params=["mongodb", "postgresql"])
def site(
    request: pytest.FixtureRequest, stack: Stack, run_id: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    """A deployment (API + consumer) on each store, holding ``seed``'s activities, shared by the browser
    tests (they add activities of users of their own)."""
    name = f"browser_{run_id}_{request.param}"
    deployment = Deployment(
        stack=stack,
        name=name,
        logs=tmp_path_factory.mktemp(name),
        store=request.param,
        extra_env={"AUTH_API_KEYS": KEYS},
    )
    in_thread(prepare(deployment))
    try:
        deployment.start_consumer()
        _, base_url = deployment.start_api()
        now = datetime.now(UTC).replace(microsecond=0)
        items = seed(now)
        with api(base_url) as http:
            answer = http.post("/api/activities/batch", json={"activities": items})
            assert answer.status_code == 202 and answer.json()["accepted"] == len(items), answer.text
        wait_until(
            lambda: total(base_url) == len(items),
            60,
            "the seeded activities to be stored",
            logs=deployment.logs,
        )
        yield Site(base_url=base_url, seeded_at=now, deployment=deployment)
    finally:
        deployment.stop_all()
        in_thread(forget(stack, name))


# Per module, not per session: sync Playwright keeps an event loop running in the main thread while it
# is started, which would stop every asyncio test that runs after this directory.
@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: run `make deps-system` (apt-get install chromium)", pytrace=False)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium-profile"),  # a fresh profile: no cache, no storage
            executable_path=CHROMIUM,
            args=ARGS,
            headless=True,
            viewport=LAPTOP,
            timezone_id=TIMEZONE,
            locale="en-GB",
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser_context: BrowserContext) -> Iterator[Page]:
    """A new tab (its own sessionStorage). Fails the test if the page threw, or if the browser refused
    anything under the Content-Security-Policy (or Trusted Types)."""
    tab = browser_context.new_page()
    problems: list[str] = []

    def console(message: ConsoleMessage) -> None:
        text = message.text
        if "Content Security Policy" in text or "Trusted" in text or "Refused" in text:
            problems.append(text)

    tab.on("console", console)
    tab.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    try:
        yield tab
    finally:
        tab.close()
    assert problems == [], problems


@dataclass(frozen=True)
class FakeSite:
    """The real app in this process, over the in-memory fakes of tests/http: the page and its API calls
    without broker or database, for tests that fake the stream (``page.route``) to drive the page's
    client through what a real server does rarely (overflow, 503, CR LF line ends)."""

    base_url: str
    fakes: Fakes

    @property
    def explorer(self) -> str:
        return f"{self.base_url}/explorer"


@pytest.fixture(scope="module")
def fake_site() -> Iterator[FakeSite]:
    fakes = Fakes()
    config = http_settings()
    app = create_app(config, services=fakes.services(config.ingest.max_batch_items))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="fake-site", daemon=True)
    thread.start()
    wait_until(lambda: server.started, 10, "the in-process app to serve")
    try:
        yield FakeSite(base_url=f"http://127.0.0.1:{port}", fakes=fakes)
    finally:
        server.should_exit = True
        thread.join(10)
