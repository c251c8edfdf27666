"""The query API for dashboards: keyset cursors, filters, delivery status, freshness."""

from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from activity_service.domain.times import from_iso, to_iso
from tests.e2e.processes import BOTH_STORES, Deployment, api, get, post, total, wait_until

pytestmark = BOTH_STORES

BASE = datetime(2026, 3, 1, tzinfo=UTC)


def load(base_url: str, count: int, *, user: str = "q", minute0: int = 0) -> list[str]:
    ids: list[str] = []
    with api(base_url) as http:
        for start in range(0, count, 100):
            items = [
                {
                    "userId": f"{user}-{i % 4}",
                    "action": ["view", "buy", "share"][i % 3],
                    # Every 5 events share a timestamp, so the id tie-break matters.
                    "timestamp": to_iso(BASE + timedelta(minutes=minute0 + i // 5)),
                }
                for i in range(start, min(start + 100, count))
            ]
            response = http.post("/api/activities/batch", json={"activities": items})
            assert response.status_code == 202, response.text
            ids += [r["id"] for r in response.json()["results"]]
    return ids


def walk(base_url: str, limit: int, **filters: Any) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    cursor = ""
    with api(base_url) as http:
        while cursor is not None:
            response = http.get("/api/activities", params={**filters, "limit": limit, "cursor": cursor})
            assert response.status_code == 200, response.text
            body = response.json()
            assert "page" not in body and "totalPages" not in body and "total" not in body
            seen += body["data"]
            cursor = body["nextCursor"]
    return seen


def order_key(item: dict[str, Any]) -> tuple[str, str]:
    return (item["timestamp"], item["id"])


def test_a_cursor_walk_sees_every_existing_event_once_while_new_ones_arrive(deployment: Deployment) -> None:
    deployment.start_consumer()
    _, base_url = deployment.start_api()
    existing = load(base_url, 1000)
    wait_until(lambda: total(base_url) == 1000, 90, "1000 events to be stored", logs=deployment.logs)

    # Meanwhile, new events land inside the range being walked (older timestamps), which is what makes
    # offset pagination repeat or skip rows.
    stop = threading.Event()
    late: list[int] = []

    def arrive() -> None:
        for minute in range(7, 200, 13):  # bounded: 16 batches of 50 at most, while the walk lasts
            if stop.wait(0.2):
                return
            load(base_url, 50, user="late", minute0=minute)
            late.append(50)

    arrivals = threading.Thread(target=arrive, daemon=True)
    arrivals.start()
    try:
        seen = walk(base_url, 37)
    finally:
        stop.set()
        arrivals.join(30)

    ids = [item["id"] for item in seen]
    assert len(ids) == len(set(ids)), "an event appeared twice"
    assert set(existing) <= set(ids), f"{len(set(existing) - set(ids))} existing events were skipped"
    assert [order_key(i) for i in seen] == sorted((order_key(i) for i in seen), reverse=True)

    # On a quiet dataset both modes return the same sequence: once every late event is stored too.
    stored = 1000 + sum(late)
    wait_until(lambda: total(base_url) == stored, 60, "the late events to be stored", logs=deployment.logs)
    by_cursor = [i["id"] for i in walk(base_url, 37)]
    by_page: list[str] = []
    with api(base_url) as http:
        for page in range(1, stored // 37 + 2):
            body = http.get("/api/activities", params={"page": page, "limit": 37}).json()
            by_page += [i["id"] for i in body["data"]]
            assert body["total"] == stored and body["totalPages"] == -(-stored // 37)
    assert by_cursor == by_page


def test_cursors_work_with_every_filter_and_only_with_their_own(deployment: Deployment) -> None:
    deployment.start_consumer()
    _, base_url = deployment.start_api()
    load(base_url, 300)
    wait_until(lambda: total(base_url) == 300, 90, "300 events to be stored", logs=deployment.logs)

    filters: dict[str, Any] = {
        "userId": "q-1",
        "action": ["view", "share"],
        "startDate": to_iso(BASE + timedelta(minutes=10)),
        "endDate": to_iso(BASE + timedelta(minutes=40)),
    }
    seen = walk(base_url, 7, **filters)
    assert seen and all(i["userId"] == "q-1" and i["action"] in ("view", "share") for i in seen)
    stamps = [from_iso(i["timestamp"]) for i in seen]
    assert min(stamps) >= BASE + timedelta(minutes=10) and max(stamps) <= BASE + timedelta(minutes=40)
    assert max(stamps) == BASE + timedelta(minutes=40)  # both bounds inclusive
    with api(base_url) as http:
        counted = http.get("/api/activities", params={**filters, "limit": 100}).json()["total"]
        assert counted == len(seen)
        first = http.get(
            "/api/activities", params={**filters, "limit": 7, "cursor": "", "includeTotal": "true"}
        )
        assert first.json()["total"] == counted
        cursor = first.json()["nextCursor"]

        other = http.get("/api/activities", params={"userId": "q-2", "limit": 7, "cursor": cursor})
        assert other.status_code == 400 and other.json()["errors"][0]["field"] == "cursor"
        forged = http.get("/api/activities", params={"cursor": "not-a-cursor"})
        assert forged.status_code == 400
        mixed = http.get("/api/activities", params={"page": 2, "cursor": cursor, **filters})
        assert mixed.status_code == 400


def test_status_goes_from_pending_to_persisted_and_names_dead_letters(deployment: Deployment) -> None:
    _, base_url = deployment.start_api()
    consumer = deployment.start_consumer()
    wait_until(lambda: get(base_url, "/api/activities").json()["freshUntil"] is not None, 60, "freshness")
    assert deployment.stop(consumer) == 0

    accepted = post(base_url, "/api/activities", json={"userId": "s", "action": "a"}).json()["id"]
    status = get(base_url, f"/api/activities/{accepted}/status").json()
    assert status["status"] == "pending" and status["id"] == accepted
    assert (
        get(base_url, "/api/activities/01936a8e-5f7c-7d3e-9a1b-2c4d6e8f0a1b/status").json()["status"]
        == "unknown"
    )

    deployment.start_consumer()
    wait_until(
        lambda: get(base_url, f"/api/activities/{accepted}/status").json()["status"] == "persisted",
        60,
        "the event to be persisted",
        logs=deployment.logs,
    )
    # An event the database refuses for good (metadata over its document limit is not possible here, so
    # use a value the API accepts and FerretDB refuses; on MongoDB it is simply stored).
    nested = post(
        base_url, "/api/activities", json={"userId": "s", "action": "m", "metadata": {"grid": [[1, 2], [3]]}}
    ).json()["id"]
    wait_until(
        lambda: (
            get(base_url, f"/api/activities/{nested}/status").json()["status"]
            in ("persisted", "dead_lettered")
        ),
        60,
        "the nested-array event to be settled",
        logs=deployment.logs,
    )
    settled = get(base_url, f"/api/activities/{nested}/status").json()["status"]
    stored = get(base_url, f"/api/activities/{nested}").status_code == 200
    assert (settled == "persisted") == stored


def test_freshness_advances_with_the_consumer_and_stays_behind_without_it(deployment: Deployment) -> None:
    _, base_url = deployment.start_api()
    assert get(base_url, "/api/activities").json()["freshUntil"] is None  # no consumer has reported yet
    consumer = deployment.start_consumer()

    def fresh() -> datetime | None:
        response = get(base_url, "/api/activities")
        value = response.json()["freshUntil"]
        assert response.headers.get("x-data-fresh-until") == value
        return None if value is None else from_iso(value)

    wait_until(lambda: fresh() is not None, 60, "a freshness time", logs=deployment.logs)
    first = fresh()
    assert first is not None
    wait_until(lambda: (fresh() or first) > first, 10, "freshness to advance while idle")

    assert deployment.stop(consumer, signal.SIGTERM) == 0
    stopped = fresh()
    ids = load(base_url, 50)
    posted = datetime.now(UTC)
    time.sleep(2.5)  # the point: time passes (an idle consumer would report every second), nothing runs
    assert fresh() == stopped, "freshness moved with no consumer running"
    assert stopped is not None and stopped < datetime.now(UTC) - timedelta(seconds=2)

    deployment.start_consumer()
    wait_until(lambda: (fresh() or stopped) > posted, 60, "freshness to pass the posts", logs=deployment.logs)
    assert total(base_url) == len(ids)  # what freshness promises: everything received before it is stored
