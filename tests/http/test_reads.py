"""GET /api/activities, /{id} and /{id}/status in-process: the page and cursor contracts, freshness,
forged cursors and injected operators, and what a read answers while the store is down."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import httpx

from activity_service.domain.activity import Activity
from activity_service.domain.delivery import DeadLetter, PartitionProgress
from activity_service.domain.times import to_iso
from tests.http.conftest import PARTITIONS, TOPIC, Fakes

BASE = datetime(2026, 3, 1, tzinfo=UTC)


async def store(fakes: Fakes, count: int) -> list[Activity]:
    """``count`` stored events, five to a timestamp (so the id breaks ties), users q-0..q-3."""
    activities = [
        Activity.record(
            id=f"e{i:04d}",
            user_id=f"q-{i % 4}",
            action=["view", "buy", "share"][i % 3],
            received_at=BASE + timedelta(minutes=i // 5),
            timestamp=BASE + timedelta(minutes=i // 5),
        )
        for i in range(count)
    ]
    await fakes.repository.add_many(activities)
    return activities


def newest_first(activities: list[Activity]) -> list[str]:
    return [a.id for a in sorted(activities, key=lambda a: (a.timestamp, a.id), reverse=True)]


async def test_page_mode_keeps_the_original_contract(http: httpx.AsyncClient, fakes: Fakes) -> None:
    activities = await store(fakes, 23)
    body = (await http.get("/api/activities")).json()
    assert set(body) == {
        "data",
        "total",
        "totalCapped",
        "page",
        "limit",
        "totalPages",
        "nextCursor",
        "freshUntil",
    }
    assert body["totalCapped"] is False
    assert (body["page"], body["limit"], body["total"], body["totalPages"]) == (1, 10, 23, 3)
    assert [a["id"] for a in body["data"]] == newest_first(activities)[:10]
    first = body["data"][0]
    assert first == {
        "id": "e0022",
        "userId": "q-2",
        "action": "buy",
        "timestamp": "2026-03-01T00:04:00.000Z",
        "metadata": {},
        "ipAddress": None,
        "receivedAt": "2026-03-01T00:04:00.000Z",
    }
    last = (await http.get("/api/activities", params={"page": 3})).json()
    assert len(last["data"]) == 3 and last["nextCursor"] is None
    past = (await http.get("/api/activities", params={"page": 4})).json()
    assert past["data"] == [] and past["total"] == 23


async def test_a_cursor_walk_returns_every_match_once_in_order_without_page_fields(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    activities = await store(fakes, 40)
    seen: list[str] = []
    cursor: str | None = ""
    while cursor is not None:
        body = (
            await http.get("/api/activities", params={"userId": "q-1", "limit": 3, "cursor": cursor})
        ).json()
        assert set(body) == {"data", "limit", "nextCursor", "freshUntil"}
        seen += [a["id"] for a in body["data"]]
        cursor = body["nextCursor"]
    assert seen == newest_first([a for a in activities if a.user_id == "q-1"])
    counted = await http.get("/api/activities", params={"cursor": "", "includeTotal": "true"})
    assert counted.json()["total"] == 40


async def test_a_cursor_only_works_with_its_own_filters_and_a_forged_one_is_a_400(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    await store(fakes, 30)
    cursor = (await http.get("/api/activities", params={"userId": "q-1", "limit": 2, "cursor": ""})).json()[
        "nextCursor"
    ]
    other = await http.get("/api/activities", params={"userId": "q-2", "limit": 2, "cursor": cursor})
    assert other.status_code == 400 and other.json()["errors"][0]["field"] == "cursor"
    with_page = await http.get("/api/activities", params={"userId": "q-1", "page": 2, "cursor": cursor})
    assert with_page.status_code == 400
    forged = [
        "not-a-cursor",
        base64.urlsafe_b64encode(b'{"t": 5, "i": "x", "f": "0"}').decode(),
        base64.urlsafe_b64encode(json.dumps({"t": "soon", "i": "x", "f": "0"}).encode()).decode(),
        "=" * 40,
    ]
    for token in forged:
        response = await http.get("/api/activities", params={"cursor": token})
        assert response.status_code == 400, token
        assert response.json()["errors"][0]["field"] == "cursor"


async def test_filters_and_inclusive_date_bounds(http: httpx.AsyncClient, fakes: Fakes) -> None:
    await store(fakes, 60)
    assert (await http.get("/api/activities", params={"userId": "q-1"})).json()["total"] == 15
    assert (await http.get("/api/activities", params=[("action", "view"), ("action", "share")])).json()[
        "total"
    ] == 40
    window = {
        "startDate": to_iso(BASE + timedelta(minutes=2)),
        "endDate": to_iso(BASE + timedelta(minutes=3)),
    }
    assert (await http.get("/api/activities", params=window)).json()["total"] == 10
    assert (
        await http.get("/api/activities", params={"startDate": "2026-03-01", "endDate": "2026-03-01"})
    ).json()["total"] == 60
    assert (await http.get("/api/activities", params={"startDate": "2026-03-02"})).json()["total"] == 0


async def test_bad_parameters_and_injected_operators_are_400s_naming_them(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    await store(fakes, 5)
    for params, field in [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"page": 0}, "page"),
        ({"startDate": "soon"}, "startDate"),
        ({"startDate": "2026-02-01", "endDate": "2026-01-01"}, "startDate"),
        ({"userId[$ne]": "x"}, "userId[$ne]"),
        ({"action[$in]": "view"}, "action[$in]"),
        ({"$where": "1"}, "$where"),
        ({"colour": "red"}, "colour"),
    ]:
        response = await http.get("/api/activities", params=params)
        assert response.status_code == 400, params
        assert response.headers["content-type"] == "application/problem+json"
        assert field in {e["field"] for e in response.json()["errors"]}, params
    for literal in ('{"$gt": ""}', "{'$ne': null}", "q-1' || '1'=='1"):
        body = (await http.get("/api/activities", params={"userId": literal})).json()
        assert body["total"] == 0 and body["data"] == [], literal


async def test_freshness_is_in_the_body_and_the_header_once_every_partition_reported(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    unknown = await http.get("/api/activities")
    assert unknown.json()["freshUntil"] is None and "x-data-fresh-until" not in unknown.headers
    for partition in range(PARTITIONS):
        at = BASE + timedelta(minutes=partition)
        await fakes.progress.record([PartitionProgress(TOPIC, partition, 5, None, True, at)])
    known = await http.get("/api/activities")
    assert known.json()["freshUntil"] == known.headers["x-data-fresh-until"] == "2026-03-01T00:00:00.000Z"


async def test_one_activity_by_id_or_a_404_problem(http: httpx.AsyncClient, fakes: Fakes) -> None:
    [stored] = await store(fakes, 1)
    found = await http.get(f"/api/activities/{stored.id}")
    assert found.status_code == 200 and found.json()["id"] == stored.id
    missing = await http.get("/api/activities/no-such-id")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert "no-such-id" in missing.json()["detail"]


async def test_status_reports_persisted_dead_lettered_pending_and_unknown(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    [stored] = await store(fakes, 1)
    await fakes.dead_letters.add(
        DeadLetter("t:0:1", "poison", "InvalidActivity", "bad", BASE, "default", "u")
    )

    async def status(event_id: str) -> str:
        body = (await http.get(f"/api/activities/{event_id}/status")).json()
        assert body["id"] == event_id
        return str(body["status"])

    assert await status(stored.id) == "persisted"
    assert await status("poison") == "dead_lettered"
    assert await status("01936a8e-5f7c-7d3e-9a1b-2c4d6e8f0a1b") == "pending"  # freshness unknown yet
    for partition in range(PARTITIONS):
        await fakes.progress.record([PartitionProgress(TOPIC, partition, 5, None, True, datetime.now(UTC))])
    assert await status("01936a8e-5f7c-7d3e-9a1b-2c4d6e8f0a1b") == "unknown"  # older than the store
    assert await status("client-chosen") == "unknown"
    assert await status("ffffffff-ffff-7fff-bfff-ffffffffffff") == "unknown"  # its time is past year 9999


async def test_reads_answer_503_with_retry_after_while_the_store_is_down(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    fakes.repository.down = True
    for path in ("/api/activities", "/api/activities/x", "/api/activities/x/status"):
        response = await http.get(path)
        assert response.status_code == 503, path
        assert response.headers["retry-after"] == "2"
        assert response.headers["content-type"] == "application/problem+json"
