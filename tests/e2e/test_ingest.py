"""Ingest that clients can trust: batches with per-item results, idempotency, size limits, backpressure."""

from __future__ import annotations

import gzip
import json
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.conftest import Stack
from tests.e2e.processes import Deployment, api, post, total, wait_until


def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


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

    # 15 posts of 5 distinct events: once all are stored the count must stay at 5, however long we wait.
    wait_until(lambda: total(base_url, userId=who) >= 5, 60, "the events to be stored", logs=deployment.logs)
    marker = {"userId": who, "action": "marker", "id": f"{who}-marker"}
    assert post(base_url, "/api/activities", json=marker).status_code == 202
    wait_until(lambda: total(base_url, userId=who) >= 6, 60, "the marker to be stored", logs=deployment.logs)
    assert total(base_url, userId=who) == 6


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


def test_gzip_bombs_are_413_and_the_api_never_holds_them(deployment: Deployment) -> None:
    """10 MB of zeros in 10 KB of gzip (and deflate), sent to both routes, again and again: each is a 413
    after inflating no more than the route's limit, and the API's RSS grows by a few MB at most."""
    api_process, base_url = deployment.start_api()
    bombs = {"gzip": gzip.compress(b"\0" * 10_000_000, 9), "deflate": zlib.compress(b"\0" * 10_000_000, 9)}
    gzipped = gzip.compress(json.dumps({"userId": "u", "action": "zipped"}).encode())
    with api(base_url, timeout=30) as http:
        json_body = {"Content-Type": "application/json"}
        taken = http.post(
            "/api/activities", content=gzipped, headers={**json_body, "Content-Encoding": "gzip"}
        )
        assert taken.status_code == 202, taken.text  # and warms the path up
        before = rss_kib(api_process.pid)
        for _ in range(20):
            for coding, bomb in bombs.items():
                for path in ("/api/activities", "/api/activities/batch"):
                    refused = http.post(path, content=bomb, headers={**json_body, "Content-Encoding": coding})
                    assert refused.status_code == 413, refused.text
                    assert refused.headers["content-type"] == "application/problem+json"
        after = rss_kib(api_process.pid)
    assert after - before < 8 * 1024, f"RSS grew by {(after - before) // 1024} MiB"
