"""POST /api/activities and /api/activities/batch in-process: what is published, what is answered, and
every way a body is refused before or after parsing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from activity_service.domain.times import to_iso
from tests.http.conftest import Fakes, serve, settings


async def test_an_accepted_activity_is_published_with_the_server_fields_and_located(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    response = await http.post(
        "/api/activities",
        json={"userId": "u1", "action": "page_view", "metadata": {"path": "/pricing"}},
        headers={"X-Forwarded-For": "203.0.113.9"},  # not from a trusted proxy: ignored
    )
    assert response.status_code == 202
    assert response.json() == {"id": "evt-000001", "status": "accepted"}
    assert response.headers["location"] == "/api/activities/evt-000001"
    [published] = fakes.publisher.published
    assert (published.id, published.user_id, published.action) == ("evt-000001", "u1", "page_view")
    assert published.metadata == {"path": "/pricing"}
    assert published.ip_address == "127.0.0.1"
    assert published.received_at == published.timestamp == fakes.clock.now()


async def test_invalid_requests_get_a_problem_naming_every_field(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    cases: list[tuple[Any, set[str]]] = [
        ({}, {"userId", "action"}),
        ({"userId": "", "action": "x"}, {"userId"}),
        ({"userId": "u", "action": "   "}, {"action"}),
        ({"userId": 5, "action": "x"}, {"userId"}),
        ({"userId": "u", "action": "x", "timestamp": "yesterday"}, {"timestamp"}),
        ({"userId": "u", "action": "x", "timestamp": 1700000000}, {"timestamp"}),
        ({"userId": "u", "action": "x", "timestamp": "2999-01-01T00:00:00Z"}, {"timestamp"}),
        ({"userId": "u", "action": "x", "metadata": [1]}, {"metadata"}),
        ({"userId": "u", "action": "x", "metadata": {"a": {"$gt": 1}}}, {"metadata.a.$gt"}),
        ({"userId": "u", "action": "x", "receivedAt": "2026-01-01T00:00:00Z"}, {"receivedAt"}),
        ({"userId": "u", "action": "x", "id": "bad id!"}, {"id"}),
        ([1, 2], {"body"}),
    ]
    for body, fields in cases:
        response = await http.post("/api/activities", json=body)
        assert response.status_code == 400, body
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert (problem["status"], problem["title"]) == (400, "Bad Request")
        assert {e["field"] for e in problem["errors"]} == fields, body
    not_json = await http.post(
        "/api/activities", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 400 and not_json.headers["content-type"] == "application/problem+json"
    assert fakes.publisher.published == []


async def test_clients_cannot_set_server_owned_fields(http: httpx.AsyncClient, fakes: Fakes) -> None:
    server_owned = [
        "receivedAt",
        "ipAddress",
        "originalTimestamp",
        "traceId",
        "trace_id",
        "traceparent",
        "_id",
    ]
    for name in server_owned:
        single = await http.post("/api/activities", json={"userId": "u", "action": "a", name: "forged"})
        assert single.status_code == 400, name
        assert single.json()["errors"] == [{"field": name, "message": "is not a known field"}]
    items = [{"userId": "u", "action": "a", name: "forged"} for name in server_owned]
    batch = await http.post(
        "/api/activities/batch", json={"activities": [*items, {"userId": "u", "action": "ok"}]}
    )
    assert batch.status_code == 202
    results = batch.json()["results"]
    assert [r["status"] for r in results] == ["rejected"] * len(server_owned) + ["accepted"]
    assert [r["errors"][0]["field"] for r in results[:-1]] == server_owned
    assert [a.action for a in fakes.publisher.published] == ["ok"]


async def test_the_event_id_comes_from_the_body_or_the_idempotency_key_never_both_differing(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    by_body = await http.post("/api/activities", json={"userId": "u", "action": "a", "id": "client-1"})
    by_header = await http.post(
        "/api/activities", json={"userId": "u", "action": "a"}, headers={"Idempotency-Key": "client-2"}
    )
    both = await http.post(
        "/api/activities",
        json={"userId": "u", "action": "a", "id": "one"},
        headers={"Idempotency-Key": "two"},
    )
    bad_key = await http.post(
        "/api/activities", json={"userId": "u", "action": "a"}, headers={"Idempotency-Key": "a b"}
    )
    assert (by_body.json()["id"], by_header.json()["id"]) == ("client-1", "client-2")
    assert both.status_code == bad_key.status_code == 400
    assert bad_key.json()["errors"][0]["field"] == "Idempotency-Key"
    assert [a.id for a in fakes.publisher.published] == ["client-1", "client-2"]


async def test_sent_at_corrects_the_client_clock(http: httpx.AsyncClient, fakes: Fakes) -> None:
    # The client's clock is days behind; by that clock it sent the event 10 s after it happened.
    skewed = {
        "userId": "u",
        "action": "tap",
        "timestamp": "2026-11-21T00:00:00Z",
        "sentAt": "2026-11-21T00:00:10Z",
    }
    assert (await http.post("/api/activities", json=skewed)).status_code == 202
    [published] = fakes.publisher.published
    assert to_iso(published.original_timestamp) == "2026-11-21T00:00:00.000Z"  # type: ignore[arg-type]
    assert to_iso(published.sent_at) == "2026-11-21T00:00:10.000Z"  # type: ignore[arg-type]
    assert (published.received_at - published.timestamp).total_seconds() == 10


async def test_a_mixed_batch_answers_per_item_in_order_and_publishes_only_valid_items(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    items: list[Any] = [
        {"userId": "w", "action": "login"},
        {"action": "no user"},
        {"userId": "w", "action": "view", "metadata": {"ok": {"$set": 1}}},
        {"userId": "w", "action": "view", "id": "batch-item-3"},
        "not an object",
        {"userId": "w", "action": "x", "receivedAt": "2026-01-01T00:00:00Z"},
        {"userId": "w", "action": "logout", "metadata": {"page": {"a.b": 1}}},
        {"userId": "w", "action": "purchase", "timestamp": "2026-11-20T10:00:00Z"},
    ]
    response = await http.post("/api/activities/batch", json={"activities": items})
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
    accepted = [r["id"] for r in body["results"] if r["status"] == "accepted"]
    assert accepted[1] == "batch-item-3"
    assert [a.id for a in fakes.publisher.published] == accepted
    assert len({a.received_at for a in fakes.publisher.published}) == 1  # one receivedAt per batch


async def test_a_batch_with_nothing_valid_is_a_400_with_the_same_results(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    response = await http.post(
        "/api/activities/batch", json={"activities": [{"userId": "u"}, {"action": "a"}]}
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["accepted"], problem["rejected"]) == (0, 2)
    assert [r["status"] for r in problem["results"]] == ["rejected", "rejected"]
    assert (await http.post("/api/activities/batch", json={"activities": []})).status_code == 400
    assert (await http.post("/api/activities/batch", json={"items": []})).status_code == 400
    assert fakes.publisher.published == []


async def chunked(size: int) -> AsyncIterator[bytes]:
    body = b'{"userId": "u", "action": "a", "metadata": {"blob": "' + b"x" * size + b'"}}'
    for start in range(0, len(body), 512):
        yield body[start : start + 512]


async def test_bodies_over_the_limit_get_413_before_parsing_and_non_json_gets_415(fakes: Fakes) -> None:
    config = settings(ingest={"max_event_bytes": 2048, "max_batch_bytes": 8192, "max_batch_items": 3})
    big = {"userId": "u", "action": "a", "metadata": {"blob": "x" * 3000}}
    async with serve(fakes, config) as http:
        single = await http.post("/api/activities", json=big)
        assert single.status_code == 413
        assert single.headers["content-type"] == "application/problem+json"
        assert single.json()["limit"] == 2048
        assert (await http.post("/api/activities/batch", json={"activities": [big] * 3})).status_code == 413
        json_type = {"content-type": "application/json"}
        assert (
            await http.post("/api/activities", content=chunked(3000), headers=json_type)
        ).status_code == 413
        assert (
            await http.post("/api/activities", content=chunked(100), headers=json_type)
        ).status_code == 202

        # In a batch, one oversized item is rejected on its own.
        mixed = await http.post(
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

        too_many = await http.post(
            "/api/activities/batch", json={"activities": [{"userId": "u", "action": "a"}] * 4}
        )
        assert too_many.status_code == 413 and too_many.json()["limit"] == 3

        form = await http.post("/api/activities", data={"userId": "u", "action": "a"})
        text = await http.post("/api/activities", content=b"hello", headers={"content-type": "text/plain"})
        assert form.status_code == text.status_code == 415
        assert form.headers["content-type"] == "application/problem+json"
    assert len(fakes.publisher.published) == 2  # the chunked one that fits and the batch's valid item


async def test_while_the_event_log_does_not_acknowledge_nothing_is_accepted(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    fakes.publisher.down = True
    single = await http.post("/api/activities", json={"userId": "u", "action": "a"})
    batch = await http.post("/api/activities/batch", json={"activities": [{"userId": "u", "action": "a"}]})
    for response in (single, batch):
        assert response.status_code == 503
        assert response.headers["retry-after"] == "3"
        assert response.headers["content-type"] == "application/problem+json"
        assert "resending with the same id is safe" in response.json()["detail"]
    fakes.publisher.down = False
    assert (await http.post("/api/activities", json={"userId": "u", "action": "a"})).status_code == 202
