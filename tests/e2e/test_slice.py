"""The whole path, with the real processes: POST -> Kafka -> consumer -> database -> GET."""

from __future__ import annotations

import random
import signal
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.e2e.processes import BOTH_STORES, Deployment, api, post_all, total, wait_until

pytestmark = BOTH_STORES

BASE = datetime(2026, 6, 1, tzinfo=UTC)
USERS = [f"user-{i}" for i in range(5)]
ACTIONS = ["login", "view", "purchase", "logout"]


def varied(n: int) -> list[dict[str, Any]]:
    rng = random.Random(n)
    items = []
    for i in range(n):
        item: dict[str, Any] = {
            "userId": USERS[i % len(USERS)],
            "action": ACTIONS[i % len(ACTIONS)],
            "timestamp": (BASE + timedelta(minutes=i)).isoformat().replace("+00:00", "Z"),
        }
        if i % 3 == 0:
            item["metadata"] = {"i": i, "tags": ["a", "b"], "nested": {"x": rng.random()}}
        items.append(item)
    return items


def test_posted_activities_are_stored_and_queryable(deployment: Deployment) -> None:
    consumer = deployment.start_consumer()
    _, base_url = deployment.start_api()
    items = varied(300)

    responses = post_all(base_url, items)
    assert [r.status_code for r in responses] == [202] * len(items)
    ids = [r.json()["id"] for r in responses]
    assert len(set(ids)) == len(items)
    assert all(r.headers["location"] == f"/api/activities/{r.json()['id']}" for r in responses)
    assert all(r.json()["status"] == "accepted" for r in responses)

    wait_until(lambda: total(base_url) == len(items), 60, "every activity to be stored", logs=deployment.logs)

    with api(base_url, timeout=10) as http:
        # Defaults and shape of the original contract.
        body = http.get("/api/activities").json()
        assert (body["page"], body["limit"], body["total"], body["totalPages"]) == (1, 10, 300, 30)
        first = body["data"][0]
        assert set(first) >= {"id", "userId", "action", "timestamp", "metadata", "ipAddress", "receivedAt"}
        assert first["timestamp"] == "2026-06-01T04:59:00.000Z"  # newest first
        assert first["ipAddress"] == "127.0.0.1"
        assert first["receivedAt"].endswith("Z")

        # Walking every page gives every activity once, newest first.
        seen: list[dict[str, Any]] = []
        for page in range(1, 7):
            seen += http.get("/api/activities", params={"page": page, "limit": 50}).json()["data"]
        assert sorted(a["id"] for a in seen) == sorted(ids)
        stamps = [a["timestamp"] for a in seen]
        assert stamps == sorted(stamps, reverse=True)
        past_end = http.get("/api/activities", params={"page": 7, "limit": 50}).json()
        assert past_end["data"] == [] and past_end["total"] == 300

        # Filters, alone and together; date bounds inclusive; a bare date covers its whole day.
        assert http.get("/api/activities", params={"userId": "user-1"}).json()["total"] == 60
        assert http.get("/api/activities", params={"action": "purchase"}).json()["total"] == 75
        assert (
            http.get("/api/activities", params=[("action", "login"), ("action", "logout")]).json()["total"]
            == 150
        )
        window = {"startDate": "2026-06-01T00:10:00Z", "endDate": "2026-06-01T00:19:00Z", "limit": 100}
        assert http.get("/api/activities", params=window).json()["total"] == 10
        both = http.get("/api/activities", params={**window, "userId": "user-0", "action": "login"}).json()
        assert [a["timestamp"] for a in both["data"]] == []  # user-0 logs in at i % 20 == 0: none in 10..19
        combo = http.get(
            "/api/activities", params={"userId": "user-0", "action": "login", "limit": 100}
        ).json()
        assert combo["total"] == 15 and all(a["userId"] == "user-0" for a in combo["data"])
        assert (
            http.get("/api/activities", params={"startDate": "2026-06-01", "endDate": "2026-06-01"}).json()[
                "total"
            ]
            == 300
        )
        assert http.get("/api/activities", params={"startDate": "2026-06-02"}).json()["total"] == 0

        # By id, and metadata intact.
        with_meta = next(i for i, item in zip(ids, items, strict=True) if "metadata" in item)
        one = http.get(f"/api/activities/{with_meta}").json()
        assert one["metadata"]["tags"] == ["a", "b"]
        missing = http.get("/api/activities/no-such-id")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"

        # Health and readiness.
        assert http.get("/health").json()["status"] == "ok"
        ready = http.get("/health/ready").json()
        assert ready == {"status": "ready", "checks": {"kafka": "ok", deployment.store: "ok"}}

    assert deployment.stop(consumer) == 0


def test_sigterm_stops_the_consumer_cleanly_and_loses_nothing(deployment: Deployment) -> None:
    consumer = deployment.start_consumer()
    _, base_url = deployment.start_api()
    first = post_all(base_url, varied(100))
    assert deployment.stop(consumer, signal.SIGTERM) == 0

    # Posted while no consumer runs: accepted by Kafka, stored when a consumer comes back.
    second = post_all(base_url, varied(50))
    assert all(r.status_code == 202 for r in first + second)
    deployment.start_consumer()
    wait_until(lambda: total(base_url) == 150, 60, "all 150 activities to be stored", logs=deployment.logs)
