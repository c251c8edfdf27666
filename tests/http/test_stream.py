"""GET /api/activities/stream in-process: the SSE wire format, filters, resuming with Last-Event-ID,
overflow, the bound on open streams, and the key it needs."""

from __future__ import annotations

import asyncio
import json

import httpx

from activity_service.domain.feed import FeedUnavailable
from tests.http.conftest import WRITER_KEY, Fakes, serve, settings, started
from tests.http.sse import stream

PATH = "/api/activities/stream"


async def post(http: httpx.AsyncClient, *events: dict[str, str]) -> None:
    response = await http.post("/api/activities/batch", json={"activities": list(events)})
    assert response.status_code == 202


async def test_accepted_activities_arrive_as_events_in_the_list_item_shape(fakes: Fakes) -> None:
    async with started(fakes) as app, serve(fakes) as http, stream(app, PATH) as live:
        assert live.status == 200
        assert live.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert live.headers["cache-control"] == "no-store"
        [ready] = await live.events(1)
        assert ready["event"] == "ready" and ready["data"] == "{}" and ready["id"]
        await post(
            http, {"userId": "u1", "action": "view", "id": "a"}, {"userId": "u2", "action": "buy", "id": "b"}
        )
        first, second = await live.events(2)
    assert (first["event"], second["event"]) == ("accepted", "accepted")
    item = json.loads(first["data"])
    assert item == {
        "id": "a",
        "userId": "u1",
        "action": "view",
        "timestamp": "2026-11-26T10:00:00.000Z",
        "metadata": {},
        "ipAddress": "127.0.0.1",
        "receivedAt": "2026-11-26T10:00:00.000Z",
        "source": "full",
    }
    assert json.loads(second["data"])["id"] == "b"
    assert len({ready["id"], first["id"], second["id"]}) == 3


async def test_filters_follow_only_matching_activities(fakes: Fakes) -> None:
    async with started(fakes) as app, serve(fakes) as http:
        async with stream(
            app, PATH, params=[("userId", "u1"), ("action", "buy"), ("action", "share")]
        ) as live:
            await live.events(1)
            await post(
                http,
                {"userId": "u1", "action": "view", "id": "no-1"},
                {"userId": "u2", "action": "buy", "id": "no-2"},
                {"userId": "u1", "action": "share", "id": "yes-1"},
                {"userId": "u1", "action": "buy", "id": "yes-2"},
            )
            events = await live.events(2)
    assert [json.loads(e["data"])["id"] for e in events] == ["yes-1", "yes-2"]


async def test_resuming_with_last_event_id_gives_what_came_after_with_no_gap_and_no_repeat(
    fakes: Fakes,
) -> None:
    async with started(fakes) as app, serve(fakes) as http:
        async with stream(app, PATH) as live:
            await live.events(1)
            await post(http, *({"userId": "u", "action": "a", "id": f"e{i}"} for i in range(3)))
            events = await live.events(3)
        # Disconnected after e1 was seen (say): meanwhile more arrive.
        await post(http, *({"userId": "u", "action": "a", "id": f"e{i}"} for i in range(3, 6)))
        async with stream(app, PATH, headers={"Last-Event-ID": events[1]["id"]}) as resumed:
            [ready, *rest] = await resumed.events(5)
    assert ready["event"] == "ready"
    assert [json.loads(e["data"])["id"] for e in rest] == ["e2", "e3", "e4", "e5"]


async def test_a_forged_last_event_id_is_a_400(fakes: Fakes) -> None:
    async with serve(fakes) as http:
        for token in ("not base64!", "eA", "LTE6MA", "MDow,MDow", "x" * 5000):
            response = await http.get(PATH, headers={"Last-Event-ID": token})
            assert response.status_code == 400, token
            assert response.json()["errors"][0]["field"] == "Last-Event-ID"


async def test_a_client_that_fell_behind_is_told_so_and_the_stream_ends(fakes: Fakes) -> None:
    async with started(fakes) as app, stream(app, PATH) as live:
        await live.events(1)
        fakes.feed.push_overflow()
        [overflow] = await live.events(1)
        assert overflow["event"] == "overflow" and "behind" in json.loads(overflow["data"])["detail"]
        assert await live.ended()


async def test_heartbeats_keep_a_quiet_stream_open(fakes: Fakes) -> None:
    config = settings(stream={"heartbeat_seconds": 0.05})
    async with started(fakes, config) as app, stream(app, PATH) as live:
        ready, beat = await live.events(2)
    assert ready["event"] == "ready" and beat == {"comment": "heartbeat"}


async def test_a_stream_ends_after_stream_max_seconds_and_resumes_where_it_stood(fakes: Fakes) -> None:
    config = settings(stream={"max_seconds": 0.2, "heartbeat_seconds": 0.05})
    async with started(fakes, config) as app, serve(fakes, config) as http:
        async with stream(app, PATH) as live:
            [ready] = await live.events(1)
            await post(http, {"userId": "u", "action": "a", "id": "before-the-end"})
            [event] = await live.events(1)
            assert await live.ended()
        await post(http, {"userId": "u", "action": "a", "id": "after-the-end"})
        async with stream(app, PATH, headers={"Last-Event-ID": event["id"]}) as resumed:
            _, missed = await resumed.events(2)
    assert json.loads(event["data"])["id"] == "before-the-end"
    assert json.loads(missed["data"])["id"] == "after-the-end"


async def test_beyond_the_bound_on_open_streams_the_answer_is_503(fakes: Fakes) -> None:
    config = settings(stream={"max_clients": 2})
    async with started(fakes, config) as app:
        async with stream(app, PATH), stream(app, PATH):
            async with stream(app, PATH) as third:
                assert third.status == 503
                assert third.headers["retry-after"] == "5"
        async with stream(app, PATH) as again:  # the others closed: room again
            assert again.status == 200
            await asyncio.sleep(0)


async def test_the_stream_needs_the_read_scope_and_answers_503_while_the_log_cannot_be_read(
    fakes: Fakes,
) -> None:
    async with started(fakes) as app:
        async with stream(app, PATH, key=WRITER_KEY) as refused:
            assert refused.status == 403
        async with stream(app, PATH, key=None) as anonymous:
            assert anonymous.status == 401
        fakes.feed.fail = FeedUnavailable("broker down")
        async with stream(app, PATH) as down:
            assert down.status == 503 and down.headers["retry-after"] == "2"
