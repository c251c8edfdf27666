"""Tenants and erasure through the real processes, on both stores: two tenants' same ids kept apart, a
resend with other content never silently dropped, an erasure under fire (backlog, replay, dead-letter
replay) that leaves nothing of its user behind, and client addresses truncated before publishing."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.conftest import Stack
from tests.e2e.processes import BOTH_STORES, Deployment, wait_until
from tests.e2e.test_consumer import run_cli
from tests.e2e.test_stream import events
from tests.faults.ledger import consumer_lag
from tests.stored import StoredView

pytestmark = BOTH_STORES
WRITE, READ, ERASE = "activities:write", "activities:read", "activities:erase"
ACME, GLOBEX, PRIVACY = "e2e-acme-key-0123456789", "e2e-globex-key-0123456789", "e2e-acme-privacy-0123456789"
KEYS = json.dumps(
    [
        {"name": "acme-app", "key": ACME, "scopes": [WRITE, READ], "tenant": "acme"},
        {"name": "globex-app", "key": GLOBEX, "scopes": [WRITE, READ], "tenant": "globex"},
        {"name": "acme-privacy", "key": PRIVACY, "scopes": [ERASE], "tenant": "acme"},
    ]
)


def client(base_url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def post_batch(http: httpx.Client, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), 100):
        response = http.post("/api/activities/batch", json={"activities": items[start : start + 100]})
        assert response.status_code == 202 and response.json()["rejected"] == 0, response.text


def counted(http: httpx.Client) -> int:
    """The tenant's events counted over the day buckets of yesterday and today (UTC), read now: the
    events were received during the test, which may have begun before midnight."""
    today = datetime.now(UTC).date()
    days = {"startDate": (today - timedelta(days=1)).isoformat(), "endDate": today.isoformat()}
    response = http.get("/api/activities/stats", params={"interval": "day", **days})
    assert response.status_code == 200, response.text
    return sum(bucket["total"] for bucket in response.json()["buckets"])


def caught_up(stack: Stack, deployment: Deployment) -> bool:
    return asyncio.run(consumer_lag(stack, deployment.name, f"{deployment.name}-group")) == 0


def test_two_tenants_with_the_same_id_and_user_are_kept_apart(
    deployment: Deployment, stack: Stack, stored: StoredView
) -> None:
    deployment.extra_env = {"AUTH_API_KEYS": KEYS}
    deployment.start_consumer()
    _, base_url = deployment.start_api()
    same = {"id": "order-123", "userId": "user-1", "action": "purchase"}
    with client(base_url, ACME) as acme, client(base_url, GLOBEX) as globex:
        with globex.stream("GET", "/api/activities/stream") as live:
            received = events(live.iter_lines())
            assert next(received)["event"] == "ready"
            for http, metadata in ((acme, {"by": "acme"}), (globex, {"by": "globex"})):
                assert http.post("/api/activities", json={**same, "metadata": metadata}).status_code == 202
            assert acme.post("/api/activities", json={**same, "id": "acme-only"}).status_code == 202
            first = json.loads(next(received)["data"])
        assert (first["id"], first["metadata"]) == ("order-123", {"by": "globex"})  # not acme's
        # On MongoDB an event is stored, then counted (two writes): the counts are final once the group
        # has committed the topic, which it does only after both.
        wait_until(
            lambda: len(stored.events()) == 3 and caught_up(stack, deployment),
            60,
            "three stored events, counted and committed",
            logs=deployment.logs,
        )
        assert sorted((e.tenant, e.id) for e in stored.events()) == [
            ("acme", "acme-only"),
            ("acme", "order-123"),
            ("globex", "order-123"),
        ]
        for http, by, total in ((acme, "acme", 2), (globex, "globex", 1)):
            listed = http.get("/api/activities", params={"userId": "user-1"}).json()
            assert listed["total"] == total
            got = http.get("/api/activities/order-123").json()
            assert (got["metadata"], got["source"]) == ({"by": by}, f"{by}-app")
            assert counted(http) == total
        assert globex.get("/api/activities/acme-only").status_code == 404
        assert globex.get("/api/activities/acme-only/status").json()["status"] == "unknown"
        assert acme.get("/api/activities/acme-only/status").json()["status"] == "persisted"


def test_a_resend_with_other_content_is_refused_or_reported_as_a_conflict(
    deployment: Deployment, stored: StoredView
) -> None:
    deployment.extra_env = {"AUTH_API_KEYS": KEYS}
    deployment.start_consumer()
    _, first_api = deployment.start_api()
    _, second_api = deployment.start_api()  # knows nothing of what the first accepted
    original = {"id": "order-9", "userId": "u", "action": "purchase", "metadata": {"total": 10}}
    changed = {**original, "metadata": {"total": 99}}
    with client(first_api, ACME) as first, client(second_api, ACME) as second:
        assert first.post("/api/activities", json=original).status_code == 202
        assert first.post("/api/activities", json=original).status_code == 202  # the same event: fine
        assert first.post("/api/activities", json=changed).status_code == 409  # the API can tell
        assert second.post("/api/activities", json=changed).status_code == 202  # this one cannot...
        wait_until(
            lambda: first.get("/api/activities/order-9/status").json()["status"] == "conflict",
            60,
            "the consumer to report the conflict",
            logs=deployment.logs,
        )  # ...the consumer can: not silently dropped, and not stored over the first
        assert first.get("/api/activities/order-9").json()["metadata"] == {"total": 10}
        assert counted(first) == 1


def test_an_erasure_under_fire_leaves_nothing_of_the_user_from_before_it(
    deployment: Deployment, stack: Stack, stored: StoredView
) -> None:
    deployment.extra_env = {"AUTH_API_KEYS": KEYS, "CONSUMER_ERASURE_INTERVAL_SECONDS": "0.5"}
    consumer = deployment.start_consumer()
    _, base_url = deployment.start_api()
    _, other_api = deployment.start_api()

    def of(user: str, prefix: str, n: int) -> list[dict[str, Any]]:
        return [{"id": f"{prefix}-{i}", "userId": user, "action": ["view", "buy"][i % 2]} for i in range(n)]

    with client(base_url, ACME) as acme, client(base_url, GLOBEX) as globex, client(other_api, ACME) as other:
        post_batch(acme, of("x", "x-stored", 100) + of("y", "y", 50))
        post_batch(globex, of("x", "gx", 50))  # the same user id in another tenant: not erased
        # A conflicting resend of one of x's events: a dead letter (and a copy on the dead-letter topic).
        assert (
            other.post("/api/activities", json={**of("x", "x-stored", 1)[0], "action": "refund"}).status_code
            == 202
        )
        wait_until(
            lambda: (
                acme.get("/api/activities/x-stored-0/status").json()["status"] == "conflict"
                and len(stored.events()) == 200
            ),
            90,
            "200 events stored and the conflict recorded",
            logs=deployment.logs,
        )
        deployment.stop(consumer)
        post_batch(acme, of("x", "x-backlog", 100))  # still in Kafka when the erasure is requested

        with client(base_url, PRIVACY) as privacy:
            requested = privacy.delete("/api/users/x/activities")
            assert requested.status_code == 202 and requested.json()["status"] == "pending"
            where = requested.headers["location"]
            post_batch(acme, of("x", "x-after", 20))  # received after the erasure: kept

            deployment.start_consumer()
            wait_until(
                lambda: privacy.get(where).json()["status"] == "done" and caught_up(stack, deployment),
                90,
                "the erasure to be done and the backlog consumed",
                logs=deployment.logs,
            )
            for command in (("replay", "--from", "earliest"), ("dlq", "replay")):
                ran = run_cli(deployment, *command)
                assert ran.returncode == 0, ran.stdout + ran.stderr
                assert " erased" in ran.stdout, ran.stdout
            report = privacy.get(where).json()

        kept = sorted(e.id for e in stored.events() if (e.tenant, e.user_id) == ("acme", "x"))
        assert kept == sorted(f"x-after-{i}" for i in range(20))
        others = [e for e in stored.events() if (e.tenant, e.user_id) != ("acme", "x")]
        assert sorted((e.tenant, e.user_id) for e in others) == [("acme", "y")] * 50 + [("globex", "x")] * 50
        assert ("acme", "x") not in stored.dead_letter_users()
        assert report["removed"] >= 100 and report["finishedAt"] is not None
        assert counted(acme) == 70 and counted(globex) == 50
        assert acme.get("/api/activities", params={"userId": "x"}).json()["total"] == 20
        assert acme.get("/api/activities/x-stored-0/status").json()["status"] == "unknown"


def test_ip_address_mode_truncates_or_keeps_nothing_before_publishing(
    deployment: Deployment, stored: StoredView
) -> None:
    deployment.extra_env = {"AUTH_API_KEYS": KEYS, "API_TRUSTED_PROXIES": "127.0.0.1/32"}
    deployment.start_consumer()
    _, truncating = deployment.start_api(IP_ADDRESS_MODE="truncated")
    _, keeping_none = deployment.start_api(IP_ADDRESS_MODE="none")
    behind_proxy = {"X-Forwarded-For": "203.0.113.77"}
    for base_url, event_id in ((truncating, "truncated"), (keeping_none, "none")):
        with client(base_url, ACME) as http:
            event = {"id": event_id, "userId": "u", "action": "view"}
            assert http.post("/api/activities", json=event, headers=behind_proxy).status_code == 202
    wait_until(lambda: len(stored.events()) == 2, 60, "two stored events", logs=deployment.logs)
    assert {e.id: e.ip_address for e in stored.events()} == {"truncated": "203.0.113.0", "none": None}
