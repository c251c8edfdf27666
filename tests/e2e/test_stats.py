"""Counts over time stay exact through what the consumer lives through: SIGKILLs mid-stream (redelivered
batches), clients resending, a replay of the whole topic, a dead-letter replay and retention purges.
The stats API is compared with the stored events bucket by bucket (minute, hour, day), on both stores."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from activity_service.domain.activity import Activity
from activity_service.domain.times import to_iso
from activity_service.infrastructure.kafka.codec import encode
from activity_service.infrastructure.kafka.topics import ensure_topics
from tests.conftest import Stack
from tests.e2e.counts import count_mismatches
from tests.e2e.processes import AUTH_HEADERS, BOTH_STORES, Deployment, wait_until
from tests.e2e.test_consumer import produce, run_cli
from tests.faults.ledger import consumer_lag
from tests.stored import StoredView

pytestmark = BOTH_STORES
ACTIONS = ["view", "buy", "share", "a.b", "$odd"]  # keys MongoDB would read as paths or operators too


def batch(start: int, now: datetime, *, minutes_ago: int | None = None) -> list[dict[str, Any]]:
    return [
        {
            "id": f"s-{i}",
            "userId": f"u{i % 7}",
            "action": ACTIONS[i % len(ACTIONS)],
            "timestamp": to_iso(now - timedelta(minutes=(i % 170) if minutes_ago is None else minutes_ago)),
        }
        for i in range(start, start + 20)
    ]


def test_counts_equal_the_stored_events_after_kills_resends_replays_and_retention(
    deployment: Deployment, stack: Stack, stored: StoredView
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    # Every process of the deployment (consumers, API, replays) keeps two days.
    deployment.extra_env = {"RETENTION_DAYS": "2", "RETENTION_PURGE_INTERVAL_SECONDS": "1"}
    consumer = deployment.start_consumer(CONSUMER_MAX_BATCH_RECORDS="30")
    _, base_url = deployment.start_api()
    with httpx.Client(base_url=base_url, headers=AUTH_HEADERS, timeout=30) as http:

        def post(items: list[dict[str, Any]]) -> None:
            response = http.post("/api/activities/batch", json={"activities": items})
            assert response.status_code == 202 and response.json()["accepted"] == len(items), response.text

        for n in range(30):
            post(batch(n * 20, now))
            if n in (8, 19):  # the consumer dies mid-stream, whatever it was doing
                consumer.send_signal(signal.SIGKILL)
                consumer.wait(10)
                consumer = deployment.start_consumer(CONSUMER_MAX_BATCH_RECORDS="30")
        for n in range(5):  # clients resend what they already sent
            post(batch(n * 20, now))
        post(batch(1000, now, minutes_ago=5 * 24 * 60))  # old enough for retention

    # A dead letter an older consumer could not read, now fixed, replayed from the dead-letter topic.
    fixed = Activity.record(
        id="fixed-1", user_id="u1", action="view", received_at=now, timestamp=now - timedelta(minutes=3)
    )
    asyncio.run(ensure_topics(stack.kafka_bootstrap, [deployment.name, f"{deployment.name}.dlq"], 3, 1))
    asyncio.run(produce(stack, f"{deployment.name}.dlq", [(b"u1", encode(fixed))], partition=0))

    def caught_up() -> bool:
        lag = asyncio.run(consumer_lag(stack, deployment.name, f"{deployment.name}-group"))
        return lag == 0 and stored.count() >= 600 and not stored.has("s-1000")

    wait_until(caught_up, 120, "the topic to be stored and the old events purged", logs=deployment.logs)
    dlq = run_cli(deployment, "dlq", "replay")
    assert dlq.returncode == 0 and "1 stored" in dlq.stdout, dlq.stdout + dlq.stderr
    replay = run_cli(deployment, "replay", "--from", "earliest")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "0 stored" in replay.stdout and "20 past retention" in replay.stdout, replay.stdout
    assert stored.count() == 601

    assert count_mismatches(base_url, stored, now - timedelta(hours=3), now) == []
    old = now - timedelta(days=5)
    assert count_mismatches(base_url, stored, old - timedelta(hours=1), old + timedelta(hours=1)) == []
    with httpx.Client(base_url=base_url, headers=AUTH_HEADERS, timeout=30) as http:
        day = http.get(
            "/api/activities/stats",
            params={"interval": "day", "startDate": to_iso(old - timedelta(days=1)), "endDate": to_iso(now)},
        ).json()
    assert sum(b["total"] for b in day["buckets"]) == 601
    assert all(b["total"] == 0 for b in day["buckets"][:3]), "the purged days still count events"
