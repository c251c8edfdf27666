"""Ingest that clients can trust: batches with per-item results, idempotency, size limits, backpressure."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from activity_service.domain.times import from_iso
from tests.conftest import Stack
from tests.e2e.processes import Deployment, api, get, post, total, wait_until


def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


def test_a_mixed_batch_answers_per_item_in_order_and_stores_only_valid_items(deployment: Deployment) -> None:
    deployment.start_consumer()
    _, base_url = deployment.start_api()
    who = user()
    items: list[Any] = [
        {"userId": who, "action": "login"},
        {"action": "no user"},
        {"userId": who, "action": "view", "metadata": {"ok": {"$set": 1}}},
        {"userId": who, "action": "view", "id": "batch-item-3"},
        "not an object",
        {"userId": who, "action": "x", "receivedAt": "2026-01-01T00:00:00Z"},
        {"userId": who, "action": "logout", "metadata": {"page": {"a.b": 1}}},
        {"userId": who, "action": "purchase", "timestamp": "2026-11-20T10:00:00Z"},
    ]
    response = post(base_url, "/api/activities/batch", json={"activities": items}, timeout=30)
    assert response.status_code == 202
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (3, 5)
    statuses = [(r["index"], r["status"]) for r in body["results"]]
    assert statuses == list(
        enumerate(["accepted", "rejected", "rejected", "accepted"] + ["rejected"] * 3 + ["accepted"])
    )
    fields = {
        r["index"]: {e["field"] for e in r["errors"]} for r in body["results"] if r["status"] == "rejected"
    }
    assert fields == {
        1: {"userId"},
        2: {"metadata.ok.$set"},
        4: {"body"},
        5: {"receivedAt"},
        6: {"metadata.page.a.b"},
    }
    assert body["results"][3]["id"] == "batch-item-3"

    accepted = [r["id"] for r in body["results"] if r["status"] == "accepted"]
    wait_until(
        lambda: total(base_url, userId=who) == 3, 60, "the 3 valid items to be stored", logs=deployment.logs
    )
    stored = get(base_url, "/api/activities", params={"userId": who}).json()["data"]
    assert sorted(a["id"] for a in stored) == sorted(accepted)


def test_a_batch_with_nothing_valid_is_a_400_with_the_same_results(deployment: Deployment) -> None:
    _, base_url = deployment.start_api()
    with api(base_url, timeout=10) as http:
        response = http.post("/api/activities/batch", json={"activities": [{"userId": "u"}, {"action": "a"}]})
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert (problem["accepted"], problem["rejected"]) == (0, 2)
        assert [r["status"] for r in problem["results"]] == ["rejected", "rejected"]
        assert http.post("/api/activities/batch", json={"activities": []}).status_code == 400
        assert http.post("/api/activities/batch", json={"items": []}).status_code == 400


def test_resending_the_same_event_stores_it_once(deployment: Deployment) -> None:
    deployment.start_consumer()
    _, base_url = deployment.start_api()
    who = user()
    with api(base_url, timeout=30) as http:
        for _ in range(3):
            single = http.post("/api/activities", json={"userId": who, "action": "a", "id": f"{who}-body"})
            keyed = http.post(
                "/api/activities",
                json={"userId": who, "action": "b"},
                headers={"Idempotency-Key": f"{who}-header"},
            )
            batch = http.post(
                "/api/activities/batch",
                json={
                    "activities": [{"userId": who, "action": "c", "id": f"{who}-batch-{i}"} for i in range(3)]
                },
            )
            assert (single.status_code, keyed.status_code, batch.status_code) == (202, 202, 202)
            assert single.json()["id"] == f"{who}-body"
            assert keyed.json()["id"] == f"{who}-header"
        conflicting = http.post(
            "/api/activities",
            json={"userId": who, "action": "a", "id": "one"},
            headers={"Idempotency-Key": "two"},
        )
        assert conflicting.status_code == 400
        bad_key = http.post(
            "/api/activities", json={"userId": who, "action": "a"}, headers={"Idempotency-Key": "a b"}
        )
        assert bad_key.status_code == 400
        assert bad_key.json()["errors"][0]["field"] == "Idempotency-Key"

    # 15 posts of 5 distinct events: once all are stored the count must stay at 5, however long we wait.
    wait_until(lambda: total(base_url, userId=who) >= 5, 60, "the events to be stored", logs=deployment.logs)
    marker = {"userId": who, "action": "marker", "id": f"{who}-marker"}
    assert post(base_url, "/api/activities", json=marker).status_code == 202
    wait_until(lambda: total(base_url, userId=who) >= 6, 60, "the marker to be stored", logs=deployment.logs)
    assert total(base_url, userId=who) == 6


def test_bodies_over_the_limit_get_413_before_parsing_and_non_json_gets_415(deployment: Deployment) -> None:
    _, base_url = deployment.start_api(INGEST_MAX_EVENT_BYTES="2048", INGEST_MAX_BATCH_BYTES="8192")
    big = {"userId": "u", "action": "a", "metadata": {"blob": "x" * 3000}}
    with api(base_url, timeout=10) as http:
        single = http.post("/api/activities", json=big)
        assert single.status_code == 413
        assert single.headers["content-type"] == "application/problem+json"
        assert single.json()["limit"] == 2048
        assert http.post("/api/activities/batch", json={"activities": [big] * 3}).status_code == 413

        def chunked(size: int) -> Iterator[bytes]:
            body = b'{"userId": "u", "action": "a", "metadata": {"blob": "' + b"x" * size + b'"}}'
            for start in range(0, len(body), 512):
                yield body[start : start + 512]

        no_length = http.post(
            "/api/activities", content=chunked(3000), headers={"content-type": "application/json"}
        )
        assert no_length.status_code == 413
        fits = http.post(
            "/api/activities", content=chunked(100), headers={"content-type": "application/json"}
        )
        assert fits.status_code == 202

        # In a batch, one oversized item is rejected on its own.
        mixed = http.post(
            "/api/activities/batch",
            json={
                "activities": [
                    {"userId": "u", "action": "a"},
                    {"userId": "u", "action": "a", "metadata": {"b": "x" * 2500}},
                ]
            },
        )
        assert mixed.status_code == 202
        assert [r["status"] for r in mixed.json()["results"]] == ["accepted", "rejected"]

        form = http.post("/api/activities", data={"userId": "u", "action": "a"})
        text = http.post("/api/activities", content=b"hello", headers={"content-type": "text/plain"})
        assert form.status_code == text.status_code == 415
        assert form.headers["content-type"] == "application/problem+json"


def test_too_many_items_is_413(deployment: Deployment) -> None:
    _, base_url = deployment.start_api(INGEST_MAX_BATCH_ITEMS="3")
    items = [{"userId": "u", "action": "a"}] * 4
    response = post(base_url, "/api/activities/batch", json={"activities": items}, timeout=10)
    assert response.status_code == 413
    assert response.json()["limit"] == 3


def test_sent_at_corrects_the_client_clock(deployment: Deployment) -> None:
    deployment.start_consumer()
    _, base_url = deployment.start_api()
    # The client's clock is years behind; by that clock it sent the event 10 s after it happened.
    skewed = {
        "userId": user(),
        "action": "tap",
        "timestamp": "2020-01-01T00:00:00Z",
        "sentAt": "2020-01-01T00:00:10Z",
    }
    response = post(base_url, "/api/activities", json=skewed, timeout=10)
    assert response.status_code == 202
    event_id = response.json()["id"]
    wait_until(
        lambda: get(base_url, f"/api/activities/{event_id}").status_code == 200,
        60,
        "the event to be stored",
        logs=deployment.logs,
    )
    stored = get(base_url, f"/api/activities/{event_id}").json()
    assert stored["originalTimestamp"] == "2020-01-01T00:00:00.000Z"
    assert stored["sentAt"] == "2020-01-01T00:00:10.000Z"
    lag = from_iso(stored["receivedAt"]) - from_iso(stored["timestamp"])
    assert lag.total_seconds() == 10

    future = post(
        base_url, "/api/activities", json={"userId": "u", "action": "a", "timestamp": "2999-01-01T00:00:00Z"}
    )
    assert future.status_code == 400
    assert future.json()["errors"][0]["field"] == "timestamp"


def test_503_with_retry_after_while_kafka_is_down_and_202_once_it_is_back(
    deployment: Deployment, stack: Stack
) -> None:
    _, base_url = deployment.start_api(INGEST_PUBLISH_TIMEOUT_SECONDS="2")
    event = {"userId": user(), "action": "a"}
    assert post(base_url, "/api/activities", json=event, timeout=10).status_code == 202
    stack.stop("kafka")
    try:
        with api(base_url, timeout=10) as http:
            for _ in range(3):
                down = http.post("/api/activities", json=event)
                assert down.status_code == 503, down.text
                assert int(down.headers["retry-after"]) >= 1
                assert down.headers["content-type"] == "application/problem+json"
            batch = http.post("/api/activities/batch", json={"activities": [event, event]})
            assert batch.status_code == 503
            ready = http.get("/health/ready")
            assert ready.status_code == 503
            assert ready.json()["checks"]["kafka"] != "ok"
    finally:
        stack.start("kafka")

    def accepted_again() -> bool:
        return post(base_url, "/api/activities", json=event, timeout=10).status_code == 202

    wait_until(accepted_again, 60, "the API to accept again after Kafka came back", logs=deployment.logs)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_overload_gets_503_at_once_and_memory_stays_bounded(deployment: Deployment) -> None:
    api_process, base_url = deployment.start_api(INGEST_MAX_IN_FLIGHT_EVENTS="300")
    batch = {"activities": [{"userId": f"u{i}", "action": "flood", "metadata": {"i": i}} for i in range(100)]}
    with api(base_url, timeout=30, limits=httpx.Limits(max_connections=64)) as http:
        http.post("/api/activities/batch", json=batch)  # warm up
        before = rss_kib(api_process.pid)
        with ThreadPoolExecutor(48) as pool:
            codes = list(
                pool.map(lambda _: http.post("/api/activities/batch", json=batch).status_code, range(600))
            )
        after = rss_kib(api_process.pid)
    assert set(codes) <= {202, 503}
    assert codes.count(503) > 0, "the in-flight bound was never reached"
    assert codes.count(202) > 0
    assert after - before < 100 * 1024, f"RSS grew by {(after - before) // 1024} MiB"
