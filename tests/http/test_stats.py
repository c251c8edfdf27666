"""GET /api/activities/stats in-process: the answer's shape, every bucket, filters, and refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from activity_service.domain.activity import Activity
from activity_service.domain.delivery import PartitionProgress
from tests.http.conftest import PARTITIONS, READER_KEY, TOPIC, WRITER_KEY, Fakes, bearer

DAY = datetime(2026, 3, 1, tzinfo=UTC)


async def store(fakes: Fakes) -> None:
    await fakes.repository.add_many(
        [
            Activity.record(
                id=f"e{i}",
                user_id=f"u{i % 2}",
                action="buy" if i % 4 == 0 else "view",
                received_at=DAY + timedelta(hours=h),
                timestamp=DAY + timedelta(hours=h),
            )
            for i, h in enumerate([0, 0, 0, 2, 2, 5, 5, 5])
        ]
    )


async def test_counts_per_hour_every_bucket_with_freshness(http: httpx.AsyncClient, fakes: Fakes) -> None:
    await store(fakes)
    for partition in range(PARTITIONS):
        await fakes.progress.record(
            [PartitionProgress(TOPIC, partition, 1, None, True, DAY + timedelta(days=1))]
        )
    response = await http.get(
        "/api/activities/stats",
        params={"interval": "hour", "startDate": "2026-03-01T00:30:00Z", "endDate": "2026-03-01T05:00:00Z"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "interval": "hour",
        "buckets": [
            {"start": f"2026-03-01T0{h}:00:00.000Z", "total": n}
            for h, n in [(0, 3), (1, 0), (2, 2), (3, 0), (4, 0), (5, 3)]
        ],
        "freshUntil": "2026-03-02T00:00:00.000Z",
    }
    assert response.headers["x-data-fresh-until"] == body["freshUntil"]


async def test_group_by_action_and_filters(http: httpx.AsyncClient, fakes: Fakes) -> None:
    await store(fakes)
    day = {"interval": "day", "startDate": "2026-03-01", "endDate": "2026-03-01"}
    grouped = (await http.get("/api/activities/stats", params={**day, "groupBy": "action"})).json()
    assert grouped["buckets"] == [
        {"start": "2026-03-01T00:00:00.000Z", "total": 8, "byAction": {"buy": 2, "view": 6}}
    ]
    buys = (
        await http.get(
            "/api/activities/stats",
            params=[*day.items(), ("action", "buy"), ("action", "share"), ("groupBy", "action")],
        )
    ).json()
    assert buys["buckets"][0] == {
        "start": "2026-03-01T00:00:00.000Z",
        "total": 2,
        "byAction": {"buy": 2, "share": 0},
    }
    user = (await http.get("/api/activities/stats", params={**day, "userId": "u1"})).json()
    assert user["buckets"][0]["total"] == 4
    assert "byAction" not in user["buckets"][0]


async def test_refusals_are_400_problems_naming_the_parameter(http: httpx.AsyncClient) -> None:
    base = {"interval": "minute", "startDate": "2026-03-01T00:00:00Z", "endDate": "2026-03-01T16:39:00Z"}
    assert (await http.get("/api/activities/stats", params=base)).status_code == 200  # exactly 1,000 buckets
    for params, field in [
        ({**base, "endDate": "2026-03-01T16:40:00Z"}, "interval"),  # 1,001
        ({**base, "interval": "week"}, "interval"),
        ({"interval": "hour", "startDate": "2026-03-01"}, "endDate"),
        ({"interval": "hour", "endDate": "2026-03-01"}, "startDate"),
        ({**base, "startDate": "2026-03-02"}, "startDate"),  # after endDate
        ({**base, "groupBy": "user"}, "groupBy"),
        ({**base, "page": "2"}, "page"),
        ({**base, "startDate": "9999-12-31T23:59:59-01:00"}, "startDate"),
        ({"interval": "day", "startDate": "9999-12-30", "endDate": "9999-12-31"}, "endDate"),  # ends in 10000
        ({**base, "startDate": "9999-12-31T23:00:00Z", "endDate": "9999-12-31T23:59:59Z"}, "endDate"),
    ]:
        response = await http.get("/api/activities/stats", params=params)
        assert response.status_code == 400, params
        assert response.headers["content-type"] == "application/problem+json"
        assert field in {e["field"] for e in response.json()["errors"]}, (params, response.json())


async def test_stats_need_the_read_scope_and_are_not_an_activity_id(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    params = {"interval": "day", "startDate": "2026-03-01", "endDate": "2026-03-02"}
    assert (
        await http.get("/api/activities/stats", params=params, headers=bearer(READER_KEY))
    ).status_code == 200
    assert (
        await http.get("/api/activities/stats", params=params, headers=bearer(WRITER_KEY))
    ).status_code == 403
    await fakes.repository.add_many([Activity.record(id="stats", user_id="u", action="a", received_at=DAY)])
    assert (
        await http.get("/api/activities/stats")
    ).status_code == 400  # the stats route, not the event "stats"


async def test_stats_answer_503_while_the_store_is_down(http: httpx.AsyncClient, fakes: Fakes) -> None:
    fakes.repository.down = True
    response = await http.get(
        "/api/activities/stats",
        params={"interval": "day", "startDate": "2026-03-01", "endDate": "2026-03-01"},
    )
    assert response.status_code == 503 and response.headers["retry-after"] == "2"
