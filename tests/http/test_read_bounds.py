"""What one read may cost, in-process: page x limit is capped (400, pointing to cursors), totals are
counted up to a cap and say so, reads past their time limit are a 503 with Retry-After, and beyond
QUERY_MAX_CONCURRENT reads in progress another read is a 503 at once while ingest and readiness pass.
(The time limits on the real databases: tests/integration/test_read_bounds.py.)"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx

from activity_service.domain.activity import Activity
from tests.http.conftest import FULL_KEY, PEER, Fakes, bearer, serve, settings, started
from tests.http.sse import stream

STREAM = "/api/activities/stream"


def store(fakes: Fakes, count: int) -> None:
    now = fakes.clock.now()
    for n in range(count):
        at = now - timedelta(seconds=n)
        activity = Activity.record(id=f"e{n:05d}", user_id="u", action="a", received_at=at, timestamp=at)
        fakes.repository.documents[activity.key] = activity


async def test_page_mode_reads_at_most_query_max_depth_rows_deep(fakes: Fakes) -> None:
    store(fakes, 30)
    async with serve(fakes, settings(query={"max_depth": 200})) as http:
        assert (await http.get("/api/activities", params={"page": 2, "limit": 100})).status_code == 200
        deep = await http.get("/api/activities", params={"page": 3, "limit": 100})
        assert deep.status_code == 400
        [error] = deep.json()["errors"]
        assert error["field"] == "page" and "cursor" in error["message"] and "200" in error["message"]
        walk = await http.get("/api/activities", params={"cursor": "", "limit": 100})
        assert walk.status_code == 200  # cursors go any depth at the cost of one page


async def test_totals_are_counted_up_to_query_max_count_and_say_when_they_stop(fakes: Fakes) -> None:
    store(fakes, 30)
    async with serve(fakes, settings(query={"max_count": 25})) as http:
        capped = (await http.get("/api/activities", params={"limit": 10})).json()
        assert (capped["total"], capped["totalCapped"], capped["totalPages"]) == (25, True, 3)
        exact = (await http.get("/api/activities", params={"limit": 10, "userId": "nobody"})).json()
        assert (exact["total"], exact["totalCapped"]) == (0, False)
        walk = (await http.get("/api/activities", params={"cursor": "", "includeTotal": "true"})).json()
        assert (walk["total"], walk["totalCapped"]) == (25, True)
        assert "totalCapped" not in (await http.get("/api/activities", params={"cursor": ""})).json()


async def test_a_read_past_its_time_limit_is_a_503_with_retry_after(fakes: Fakes) -> None:
    async with serve(fakes) as http:
        fakes.repository.timed_out = True
        answer = await http.get("/api/activities")
        assert answer.status_code == 503 and answer.headers["retry-after"] == "2"
        assert "QUERY_TIMEOUT_MS" in answer.json()["detail"]


async def test_beyond_query_max_concurrent_reads_a_read_is_refused_at_once(fakes: Fakes) -> None:
    fakes.repository.slow = asyncio.Event()
    async with serve(fakes, settings(query={"max_concurrent": 2})) as http:
        held = [asyncio.create_task(http.get("/api/activities")) for _ in range(2)]
        await asyncio.sleep(0.05)  # both reads are in the (slow) store
        refused = await http.get("/api/activities")
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert refused.headers["content-type"] == "application/problem+json"
        ingest = await http.post("/api/activities", json={"userId": "u", "action": "while_reads_wait"})
        assert ingest.status_code == 202
        assert (await http.get("/health/ready")).status_code == 200
        fakes.repository.slow.set()
        assert [(await task).status_code for task in held] == [200, 200]
        assert (await http.get("/api/activities")).status_code == 200


async def test_an_open_live_tail_holds_no_read_slot(fakes: Fakes) -> None:
    async with started(fakes, settings(query={"max_concurrent": 1})) as app:
        transport = httpx.ASGITransport(app=app, client=PEER)
        async with (
            stream(app, STREAM) as live,
            httpx.AsyncClient(
                transport=transport, base_url="http://api.test", headers=bearer(FULL_KEY)
            ) as http,
        ):
            await live.events(1)  # the stream is open, and stays so
            assert (await http.get("/api/activities")).status_code == 200
