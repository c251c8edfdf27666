"""What a reader does on the explorer page, in Chromium, against the real API and consumer: paste a key,
filter, walk cursor pages forward and back, read the chart, see errors. Every wait is on page state
(Playwright's auto-waiting expectations), never a fixed sleep."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from playwright.sync_api import Page, Request, expect

from activity_service.domain.times import to_iso
from tests.browser.conftest import READER_KEY, TIMEZONE, Site
from tests.e2e.processes import api


def open_with_key(page: Page, site: Site) -> None:
    page.goto(site.explorer)
    expect(page.get_by_role("heading", name="activity-service explorer")).to_be_visible()
    page.get_by_label("API key").fill(READER_KEY)
    page.get_by_role("button", name="Use key").click()
    expect(page.locator("#key-status")).to_contain_text("A key is set for this tab")


def pages_of(site: Site, limit: int, **filters: Any) -> list[list[str]]:
    """The ids of every cursor page, as the API answers them."""
    pages, cursor = [], ""
    with api(site.base_url) as http:
        while cursor is not None:
            body = http.get("/api/activities", params={**filters, "limit": limit, "cursor": cursor}).json()
            pages.append([item["id"] for item in body["data"]])
            cursor = body["nextCursor"]
    return pages


def local(moment: Any) -> str:
    """What a reader types into a datetime-local field, in the browser's time zone."""
    return str(moment.astimezone(ZoneInfo(TIMEZONE)).strftime("%Y-%m-%dT%H:%M:%S"))


def test_a_read_key_filters_and_cursor_pages_forward_and_back(page: Page, site: Site) -> None:
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    open_with_key(page, site)
    expect(page.get_by_label("API key")).to_have_value("")  # not left in the field
    page.get_by_label("User id").fill("alice")
    page.get_by_label("Actions").fill("view, buy")
    page.get_by_label("Per page").select_option("10")
    page.get_by_role("button", name="Apply filters").click()

    expected = pages_of(site, 10, userId="alice", action=["view", "buy"])
    assert [len(p) for p in expected] == [10, 10, 8]
    ids = page.locator("#activities tbody tr td:nth-child(6)")
    status = page.locator("#page-status")
    next_page = page.get_by_role("button", name="Next")
    expect(status).to_have_text("Page 1: activities 1–10")
    expect(ids).to_have_text(expected[0])
    next_page.click()
    expect(status).to_have_text("Page 2: activities 11–20")
    expect(ids).to_have_text(expected[1])
    next_page.focus()  # the keyboard works as the mouse does, and the focus stays put
    page.keyboard.press("Enter")
    expect(status).to_have_text("Page 3: activities 21–28 (last page)")
    expect(ids).to_have_text(expected[2])
    expect(next_page).to_be_disabled()
    expect(page.get_by_role("heading", name="Stored activities")).to_be_focused()
    page.get_by_role("button", name="Previous").click()
    expect(status).to_have_text("Page 2: activities 11–20")
    expect(ids).to_have_text(expected[1])
    page.get_by_role("button", name="First").click()
    expect(ids).to_have_text(expected[0])
    expect(page.locator("#activities tbody tr").first).to_contain_text("alice")

    # The key lives in this tab's sessionStorage only, and travels in the Authorization header only.
    storage = page.evaluate("() => [Object.keys(sessionStorage), localStorage.length, document.cookie]")
    assert storage == [["activity-service.explorer.key"], 0, ""]
    calls = [r for r in requests if "/api/" in r.url]
    assert calls and all(r.headers.get("authorization") == f"Bearer {READER_KEY}" for r in calls)
    assert not [r.url for r in requests if READER_KEY in r.url]
    page.reload()  # the tab remembers the key
    expect(page.locator("#activities tbody tr")).to_have_count(25)


def test_the_chart_totals_equal_the_stats_api(page: Page, site: Site) -> None:
    open_with_key(page, site)
    caption = page.locator("#chart-caption")
    # Without dates: the last 24 hours by hour, holding every activity stored (all of the last hours).
    now = datetime.now(UTC)
    with api(site.base_url) as http:
        params = {"interval": "hour", "startDate": to_iso(now - timedelta(days=1)), "endDate": to_iso(now)}
        everything = sum(
            b["total"] for b in http.get("/api/activities/stats", params=params).json()["buckets"]
        )
    assert everything >= 58
    expect(caption).to_contain_text(
        re.compile(rf"^{everything} activities in 2[45] buckets of one hour, the last 24 hours")
    )
    expect(page.locator("#chart-summary")).to_have_text(f"{everything} in total")

    start, end = site.seeded_at - timedelta(hours=2), site.seeded_at + timedelta(minutes=5)
    page.get_by_label("User id").fill("alice")
    page.get_by_label("Actions").fill("view,buy")
    page.get_by_label("From", exact=True).fill(local(start))
    page.get_by_label("To", exact=True).fill(local(end))
    page.get_by_role("button", name="Apply filters").click()
    with api(site.base_url) as http:
        params = {"interval": "minute", "startDate": to_iso(start), "endDate": to_iso(end), "userId": "alice"}
        stats = http.get("/api/activities/stats", params={**params, "action": ["view", "buy"]}).json()
    counted = [b for b in stats["buckets"] if b["total"] > 0]
    total = sum(b["total"] for b in counted)
    assert total > 0 and len(stats["buckets"]) == 126
    expect(page.locator("#chart-summary")).to_have_text(f"{total} in total")
    expect(caption).to_contain_text(f"{total} activities in 126 buckets of one minute")
    expect(page.locator("#chart svg rect.bar")).to_have_count(len(counted))
    # The text alternative: one row per interval holding activities, with the API's start and count.
    rows = page.locator("#chart-table tbody tr")
    expect(rows.locator("td:nth-child(2)")).to_have_text([str(b["total"]) for b in counted])
    assert rows.locator("time").evaluate_all("ts => ts.map(t => t.dateTime)") == [b["start"] for b in counted]


def test_api_errors_are_shown_with_their_detail(page: Page, site: Site) -> None:
    page.goto(site.explorer)
    page.get_by_label("API key").fill("not-a-key-of-this-deployment")
    page.get_by_role("button", name="Use key").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Activities: 401 Unauthorized — The API key is not valid.")
    expect(page.locator("#key-status")).to_have_text("The API refused this key: paste another.")

    page.get_by_label("API key").fill(READER_KEY)
    page.get_by_role("button", name="Use key").click()
    expect(alert).to_be_empty()
    page.get_by_label("From", exact=True).fill(local(site.seeded_at - timedelta(days=30)))
    page.get_by_label("Chart bars").select_option("minute")
    page.get_by_role("button", name="Apply filters").click()
    expect(alert).to_contain_text("Chart: 400 Bad Request — The request is not valid.")
    expect(alert.locator("li")).to_contain_text(re.compile(r"^interval: \d+ minute buckets"))
    expect(page.locator("#chart svg")).to_have_count(0)  # the chart of the filters before is taken down
    expect(page.locator("#chart-caption")).to_have_text(re.compile("^No chart: the counts could not be read"))

    page.get_by_role("button", name="Forget key").click()
    assert page.evaluate("() => sessionStorage.length") == 0
    expect(page.locator("#activities tbody tr")).to_have_count(0)


def test_text_from_the_api_is_shown_as_text_never_as_markup(page: Page, site: Site) -> None:
    open_with_key(page, site)
    page.get_by_label("User id").fill("mallory")
    page.get_by_role("button", name="Apply filters").click()
    row = page.locator("#activities tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text('<img src=x onerror="document.title=1">')
    row.locator("summary").click()  # open the metadata
    expect(row.locator("pre")).to_contain_text("<script>document.title=2</script>")
    assert row.locator("img, script").count() == 0
    assert page.title() == "activity-service explorer"
