"""The browser SDK (/sdk/activity.js) in Debian's Chromium, over the real API and consumer processes: a
page served from an origin of its own imports the script from the API, tracks events with a
publishable key, goes offline and comes back, and is closed (pagehide, sendBeacon): every tracked
event is stored exactly once. A page of another origin is refused with the same key; a 429 is retried
after its Retry-After with the same ids. Neither key is ever written to the API's log."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Request, Response, sync_playwright

from tests.browser.conftest import ARGS, CHROMIUM, in_thread
from tests.conftest import Stack
from tests.e2e.processes import API_KEY, Deployment, forget, prepare, wait_until

TENANT = "shop"
BEACON_KEY = "pk-e2e-shop-beacon-0123456789"
RETRY_KEY = "pk-e2e-shop-retry-0123456789"
# Each publishable key has a bucket per client address: 12 events, 2 more a second. The retry test
# spends it whole, so that its next batch is answered 429 with a Retry-After of a few seconds.
ADDRESS_BURST = 12
ADDRESS_RATE = 2

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>shop</title></head>
<body><p>A shop page of another origin than the API's.</p>
<script type="module">
  const api = new URLSearchParams(location.search).get("api");
  window.sdk = await import(`${api}/sdk/activity.js`);
  window.reports = [];
  window.ready = true;
</script></body></html>
"""


class _Pages(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass(frozen=True)
class Shop:
    """The shop's pages (their origin is the keys' only one) and the API they send to."""

    page_port: int
    api: str
    deployment: Deployment

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.page_port}"

    @property
    def stranger(self) -> str:
        """The same pages under another origin (localhost is not 127.0.0.1 to a browser)."""
        return f"http://localhost:{self.page_port}"

    def page_url(self, origin: str | None = None) -> str:
        return f"{origin or self.origin}/shop.html?api={self.api}"

    def stored_ids(self, user: str) -> list[str]:
        return [e.id for e in self.deployment.stored().events() if e.user_id == user and e.tenant == TENANT]


@pytest.fixture(scope="module")
def shop(stack: Stack, run_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    pages = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    threading.Thread(target=pages.serve_forever, name="shop-pages", daemon=True).start()
    origin = f"http://127.0.0.1:{pages.server_port}"
    keys = [
        {"name": "e2e", "key": API_KEY, "scopes": ["activities:write", "activities:read"]},
        *(
            {
                "name": name,
                "tenant": TENANT,
                "key": key,
                "scopes": ["activities:write"],
                "publishable": True,
                "origins": [origin],
            }
            for name, key in (("shop-beacon", BEACON_KEY), ("shop-retry", RETRY_KEY))
        ),
    ]
    name = f"sdk_{run_id}"
    deployment = Deployment(
        stack=stack,
        name=name,
        logs=tmp_path_factory.mktemp(name),
        extra_env={
            "AUTH_API_KEYS": json.dumps(keys),
            "RATE_LIMIT_ADDRESS_BURST": str(ADDRESS_BURST),
            "RATE_LIMIT_ADDRESS_EVENTS_PER_SECOND": str(ADDRESS_RATE),
        },
    )
    in_thread(prepare(deployment))
    try:
        deployment.start_consumer()
        _, base_url = deployment.start_api()
        yield Shop(page_port=pages.server_port, api=base_url, deployment=deployment)
    finally:
        deployment.stop_all()
        pages.shutdown()
        in_thread(forget(stack, name))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: run `make deps-system` (apt-get install chromium)", pytrace=False)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh profile per test: its own localStorage, so no test adopts another's queue."""
    fresh = browser.new_context()
    try:
        yield fresh
    finally:
        fresh.close()


@dataclass
class Sent:
    """One POST the page made to the API, and what it was answered (when the page saw it)."""

    at: float
    ids: list[str]
    kind: str
    status: int | None = None
    retry_after: str | None = None
    failure: str | None = None
    """Why the page got no answer it may read (offline, or an answer without CORS for its origin)."""


class Wire:
    """Every ingest POST of a context, in order, with the event ids it carried."""

    def __init__(self, context: BrowserContext) -> None:
        self.sent: dict[Request, Sent] = {}
        context.on("request", self._request)
        context.on("response", self._response)
        context.on("requestfailed", self._failed)

    def _request(self, request: Request) -> None:
        if request.method == "POST" and "/api/activities" in request.url:
            body = json.loads(request.post_data or "{}")
            ids = [item["id"] for item in body.get("activities", [body])]
            self.sent[request] = Sent(at=time.monotonic(), ids=ids, kind=request.resource_type)

    def _response(self, response: Response) -> None:
        sent = self.sent.get(response.request)
        if sent is not None:
            sent.status = response.status
            sent.retry_after = response.headers.get("retry-after")

    def _failed(self, request: Request) -> None:
        sent = self.sent.get(request)
        if sent is not None:
            sent.failure = request.failure or "failed"

    @property
    def posts(self) -> list[Sent]:
        return list(self.sent.values())


def open_shop(context: BrowserContext, url: str) -> Page:
    page = context.new_page()
    page.goto(url)
    page.wait_for_function("window.ready === true")
    return page


def start(page: Page, key: str, user: str, **options: Any) -> None:
    page.evaluate(
        """([key, user, api, options]) => {
            sdk.init({ endpoint: api, key, userId: user, onError: (r) => reports.push(r), ...options });
        }""",
        [key, user, page.url.split("api=")[1], options],
    )


def track(page: Page, count: int, action: str) -> list[str]:
    ids: list[str] = page.evaluate(
        "([count, action]) => Array.from({ length: count }, (_, i) => sdk.track(action, { n: i }))",
        [count, action],
    )
    return ids


def queue_lengths(page: Page) -> list[int]:
    """The length of each queue the page holds in localStorage."""
    lengths: list[int] = page.evaluate(
        "() => Object.values({ ...localStorage }).map((record) => JSON.parse(record).events.length)"
    )
    return lengths


def wait_stored(shop: Shop, user: str, expected: list[str], timeout: float = 60) -> None:
    wait_until(
        lambda: sorted(shop.stored_ids(user)) == sorted(expected),
        timeout,
        f"the {len(expected)} events of {user} to be stored",
        logs=shop.deployment.logs,
    )


def wait_on_page(page: Page, condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Like wait_until, but waiting in the page: sync Playwright delivers its events (the Wire's) only
    while it is called."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        page.wait_for_timeout(100)


def test_tracked_offline_and_at_closing_every_event_is_stored_exactly_once(
    shop: Shop, context: BrowserContext
) -> None:
    user = f"visitor-{uuid.uuid4().hex[:8]}"
    wire = Wire(context)
    page = open_shop(context, shop.page_url())
    # No timer sends on its own (an hour): what goes out is what the test says, and at closing the beacon.
    start(page, BEACON_KEY, user, flushInterval=3_600_000, batchSize=100)
    tracked = track(page, 3, "view")
    page.evaluate("() => sdk.flush()")
    wait_stored(shop, user, tracked)

    context.set_offline(True)
    offline = track(page, 3, "view-offline")
    page.evaluate("() => sdk.flush()")  # fails: the events stay queued, in localStorage too
    assert all(sent.status is None for sent in wire.posts if sent.ids == offline)
    assert queue_lengths(page) == [3], "the queue is in localStorage while offline"
    context.set_offline(False)  # the page's "online" event sends them
    wait_stored(shop, user, tracked + offline)

    closing = track(page, 3, "leave")
    assert not [sent for sent in wire.posts if sent.ids == closing], "nothing sends them but the beacon"
    page.close(run_before_unload=True)  # pagehide: the beacon
    wait_stored(shop, user, tracked + offline + closing)

    time.sleep(1.5)  # nothing more comes
    ids = shop.stored_ids(user)
    assert len(ids) == len(set(ids)) == 9 and set(ids) == set(tracked + offline + closing)
    assert all(sent.status in (None, 202) for sent in wire.posts if sent.ids != offline), wire.posts


def test_a_page_of_another_origin_is_refused_with_the_same_key(shop: Shop, context: BrowserContext) -> None:
    user = f"stranger-{uuid.uuid4().hex[:8]}"
    wire = Wire(context)
    page = open_shop(context, shop.page_url(shop.stranger))
    start(page, BEACON_KEY, user, flushInterval=3_600_000)
    track(page, 2, "view")
    page.evaluate("() => sdk.flush()")
    wait_on_page(page, lambda: any(sent.failure for sent in wire.posts), 10, "the API's answer")
    # The API refused it (403, below and in its log), with no CORS answer for this origin: the page
    # cannot even read the refusal, and the events stay queued.
    assert [sent.status for sent in wire.posts] == [None]
    assert queue_lengths(page) == [2]
    api_log = shop.deployment.logs / f"api-{shop.api.rsplit(':', 1)[1]}.log"
    wait_until(
        lambda: any(
            "/api/activities/batch?key=[redacted]" in line and " 403" in line
            for line in api_log.read_text().splitlines()
        ),
        10,
        "the 403 in the access log",
    )
    refused = httpx.post(
        f"{shop.api}/api/activities",
        params={"key": BEACON_KEY},
        json={"userId": user, "action": "view"},
        headers={"Origin": shop.stranger},
    )
    assert refused.status_code == 403 and "origin" in refused.json()["detail"]
    page.close(run_before_unload=True)
    time.sleep(1.5)
    assert shop.stored_ids(user) == []


def test_a_429_is_retried_after_its_retry_after_with_the_same_ids(
    shop: Shop, context: BrowserContext
) -> None:
    user = f"busy-{uuid.uuid4().hex[:8]}"
    wire = Wire(context)
    page = open_shop(context, shop.page_url())
    start(page, RETRY_KEY, user, flushInterval=100, batchSize=ADDRESS_BURST)
    first = track(page, ADDRESS_BURST, "view")  # the address's whole bucket
    wait_on_page(page, lambda: any(sent.status == 202 for sent in wire.posts), 10, "the first batch's 202")
    second = track(page, 6, "view-again")
    wait_on_page(
        page,
        lambda: any(sent.ids == second and sent.status == 202 for sent in wire.posts),
        30,
        "the second batch's 202",
    )
    wait_stored(shop, user, first + second, timeout=30)

    posts = [sent for sent in wire.posts if sent.ids == second]
    refused = [sent for sent in posts if sent.status == 429]
    assert refused, wire.posts
    retry_after = int(refused[0].retry_after or 0)
    assert retry_after >= 1
    after = [sent for sent in wire.posts if sent.at > refused[0].at]
    assert after and after[0].ids == second, "the retry carries the same ids"
    assert after[0].at - refused[0].at >= retry_after - 0.3, "and waits Retry-After"
    assert posts[-1].status == 202
    ids = shop.stored_ids(user)
    assert len(ids) == len(set(ids)) == len(first) + len(second)
    page.close()


def test_a_secret_key_in_the_query_is_refused_and_no_key_reaches_the_log(shop: Shop) -> None:
    refused = httpx.post(
        f"{shop.api}/api/activities", params={"key": API_KEY}, json={"userId": "u", "action": "view"}
    )
    assert refused.status_code == 400 and "replace it" in refused.json()["detail"]
    log = "\n".join(path.read_text(errors="replace") for path in shop.deployment.logs.iterdir())
    assert "key=[redacted]" in log, "the access log has the requests, without their keys"
    for key in (API_KEY, BEACON_KEY, RETRY_KEY):
        assert key not in log
