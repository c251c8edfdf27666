"""The page's stream client against a scripted stream (``page.route``): what a real server does rarely,
on cue. Messages are shown newest first, marked accepted, not yet stored; after a close, an overflow or
a 503 the page reconnects with Last-Event-ID set to the last id it received; a refusal stops the tail
and says why. The real stream, end to end, is tested in test_explorer.py."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from playwright.sync_api import Page, Request, Route, expect

from tests.browser.conftest import FakeSite
from tests.http.conftest import READER_KEY

STREAM = re.compile(r"/api/activities/stream(\?|$)")


def item(n: int) -> dict[str, Any]:
    at = f"2026-11-26T10:00:0{n}.000Z"
    return {
        "id": f"live-{n}",
        "userId": "alice",
        "action": "view",
        "timestamp": at,
        "metadata": {},
        "ipAddress": "127.0.0.1",
        "receivedAt": at,
    }


def message(event: str, event_id: str, data: Any, end: str = "\n") -> str:
    return end.join([f"id: {event_id}", f"event: {event}", f"data: {json.dumps(data)}", "", ""])


def stream(body: str) -> dict[str, Any]:
    return {"status": 200, "headers": {"Content-Type": "text/event-stream"}, "body": body}


def refused(status: int, detail: str, **headers: str) -> dict[str, Any]:
    body = {
        "type": "about:blank",
        "title": {403: "Forbidden", 503: "Service Unavailable"}[status],
        "status": status,
        "detail": detail,
    }
    return {
        "status": status,
        "headers": {"Content-Type": "application/problem+json", **headers},
        "body": json.dumps(body),
    }


def start_tail(page: Page, site: FakeSite, user: str = "alice") -> None:
    page.goto(site.explorer)
    page.get_by_label("API key").fill(READER_KEY)
    page.get_by_role("button", name="Use key").click()
    page.get_by_label("User id").fill(user)
    page.get_by_role("button", name="Apply filters").click()
    page.get_by_role("button", name="Start live tail").click()


def test_the_tail_shows_what_is_accepted_and_resumes_after_the_last_id(
    page: Page, fake_site: FakeSite
) -> None:
    answers = [
        # retry: 100 ms, a heartbeat, a message with CR LF line ends; then the server closes (a restart)
        stream(
            "retry: 100\n"
            + message("ready", "r0", {})
            + ": heartbeat\n\n"
            + message("accepted", "a1", item(1), "\r\n")
            + message("accepted", "a2", item(2))
        ),
        stream(
            message("ready", "r1", {}) + message("accepted", "a3", item(3)) + "event: overflow\ndata: {}\n\n"
        ),
        refused(503, "Too many open streams.", **{"Retry-After": "1"}),
        stream(message("ready", "r2", {}) + message("accepted", "a4", item(4))),
    ]
    requests: list[tuple[float, Request]] = []

    def serve(route: Route, request: Request) -> None:
        requests.append((time.monotonic(), request))
        if len(requests) <= len(answers):
            route.fulfill(**answers[len(requests) - 1])
        # then never answered: a stream with nothing new to say

    page.route(STREAM, serve)
    with page.expect_request(lambda r: r.headers.get("last-event-id") == "a4"):  # the fifth
        start_tail(page, fake_site)
    live = page.get_by_role("log")
    expect(live.get_by_role("listitem")).to_have_count(4)
    expect(live.locator("code")).to_have_text(["live-4", "live-3", "live-2", "live-1"])  # newest first
    expect(live.get_by_role("listitem").first).to_contain_text("accepted, not yet stored")
    expect(page.locator("#live-status")).to_have_text(
        "Reconnecting, resuming after the last activity received…"
    )

    assert len(requests) == 5
    assert [r.headers.get("last-event-id") for _, r in requests] == [None, "a2", "a3", "a3", "a4"]
    for _, request in requests:
        assert request.headers["authorization"] == f"Bearer {READER_KEY}"
        assert request.headers["accept"] == "text/event-stream"
        assert request.url.endswith("/api/activities/stream?userId=alice"), request.url
    assert requests[3][0] - requests[2][0] >= 0.9, "the 503's Retry-After is waited for"


def test_a_refused_tail_stops_and_says_why(page: Page, fake_site: FakeSite) -> None:
    requests: list[Request] = []

    def serve(route: Route, request: Request) -> None:
        requests.append(request)
        route.fulfill(**refused(403, "The API key 'reader' does not have the scope activities:read."))

    page.route(STREAM, serve)
    start_tail(page, fake_site)
    expect(page.get_by_role("alert")).to_contain_text(
        "Live tail: 403 Forbidden — The API key 'reader' does not have the scope activities:read."
    )
    toggle = page.get_by_role("button", name="Start live tail")
    expect(toggle).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#live-status")).to_have_text("Stopped.")
    assert len(requests) == 1


def test_new_filters_start_a_new_tail_with_an_empty_list(page: Page, fake_site: FakeSite) -> None:
    answered = False

    def serve(route: Route, request: Request) -> None:
        nonlocal answered
        if not answered:
            answered = True
            route.fulfill(**stream(message("ready", "r0", {}) + message("accepted", "a1", item(1))))
        # the stream closes after a1; the reconnect, and the tail for bob, stay open with nothing new

    page.route(STREAM, serve)
    with page.expect_request(lambda r: r.headers.get("last-event-id") == "a1") as resumed:
        start_tail(page, fake_site, user="alice")
    assert resumed.value.url.endswith("/api/activities/stream?userId=alice")
    live = page.get_by_role("log").get_by_role("listitem")
    expect(live).to_have_count(1)
    page.get_by_label("User id").fill("bob")
    with page.expect_request(STREAM) as restarted:
        page.get_by_role("button", name="Apply filters").click()
    assert restarted.value.url.endswith("/api/activities/stream?userId=bob")
    assert "last-event-id" not in restarted.value.headers, "another filter's position means nothing here"
    expect(live).to_have_count(0)
    expect(page.locator("#live-status")).to_have_text("Connecting…")
