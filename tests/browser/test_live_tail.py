"""The live tail against the real stream: an activity posted to the API shows within 2 s of its 202,
marked accepted, not yet stored; after the network drops, the page resumes with Last-Event-ID and shows
what was accepted meanwhile, once each; a read whose freshUntil has passed them marks them stored.
The test leaves a screenshot (EXPLORER_SCREENSHOT=docs/explorer.png writes the README's)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from activity_service.domain.times import from_iso
from tests.browser.conftest import READER_KEY, Site
from tests.browser.relay import Relay
from tests.e2e.processes import api, wait_until


@pytest.fixture
def relay(site: Site) -> Iterator[Relay]:
    relay = Relay(int(site.base_url.rsplit(":", 1)[1]))
    try:
        yield relay
    finally:
        relay.close()


def post(site: Site, event_id: str, action: str = "signup") -> dict[str, str]:
    with api(site.base_url) as http:
        answer = http.post("/api/activities", json={"id": event_id, "userId": "carol", "action": action})
    assert answer.status_code == 202, answer.text
    return dict(answer.json())


def test_new_activities_arrive_within_2_s_and_the_tail_resumes_without_gap_or_duplicate(
    page: Page, site: Site, relay: Relay, tmp_path: Path
) -> None:
    page.goto(f"{relay.base_url}/explorer")
    page.get_by_label("API key").fill(READER_KEY)
    page.get_by_role("button", name="Use key").click()
    expect(page.locator("#activities tbody tr")).to_have_count(25)
    page.get_by_role("button", name="Start live tail").click()
    status = page.locator("#live-status")
    expect(status).to_contain_text("Live since")
    live = page.get_by_role("log")
    ids = live.locator("code")

    post(site, "live-a")
    accepted = time.monotonic()
    expect(ids.first).to_have_text("live-a", timeout=2000)
    assert time.monotonic() - accepted < 2
    expect(live.get_by_role("listitem")).to_contain_text(["signup by carol accepted, not yet stored"])

    with relay.down():  # the network drops; the API accepts two more meanwhile
        expect(status).to_contain_text("reconnecting in")
        post(site, "live-b")
        post(site, "live-c")
    expect(ids).to_have_text(["live-c", "live-b", "live-a"])  # each once, newest first
    expect(status).to_contain_text("Live since")

    def stored_all() -> bool:
        with api(site.base_url) as http:
            fresh = http.get("/api/activities", params={"limit": 1}).json()["freshUntil"]
            received = http.get("/api/activities/live-c").json().get("receivedAt")
        return bool(fresh and received and from_iso(fresh) > from_iso(received))

    wait_until(stored_all, 20, "freshUntil to pass the live activities", logs=site.deployment.logs)
    page.get_by_role("button", name="Refresh").click()
    expect(live.locator(".badge")).to_have_text(["stored"] * 3)

    post(site, "live-d", action="purchase")
    expect(ids).to_have_text(["live-d", "live-c", "live-b", "live-a"])
    expect(live.locator(".badge").first).to_have_text("accepted, not yet stored")
    page.screenshot(path=tmp_path / "explorer.png")
    if target := os.environ.get("EXPLORER_SCREENSHOT"):
        page.screenshot(path=target)
    page.get_by_role("button", name="Stop live tail").click()
    expect(status).to_have_text("Off.")
