"""What the API counts, in-process: every answer by route, and each refused event once."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client import REGISTRY

from activity_service.domain.activity import Activity
from tests.fakes import InMemoryPublisher
from tests.http.conftest import Fakes, serve, settings


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_refused_events_are_counted_once_whichever_layer_refused_them(fakes: Fakes) -> None:
    invalid, too_large = (
        sample("activity_events_rejected_total", reason="invalid"),
        sample("activity_events_rejected_total", reason="too_large"),
    )
    refused_401 = sample("activity_http_requests_total", route="/api/activities", method="POST", status="401")
    async with serve(fakes, settings(ingest={"max_event_bytes": 1024})) as http:
        await http.post("/api/activities", json={"userId": "", "action": "a"})  # 400: one event
        await http.post(
            "/api/activities", json={"userId": "u", "action": "a", "metadata": {"b": "x" * 2000}}
        )  # 413
        await http.post(  # 202 with two of three items refused
            "/api/activities/batch",
            json={"activities": [{"userId": "u", "action": "a"}, {"action": "a"}, {"userId": "u"}]},
        )
        await http.post(
            "/api/activities/batch", json={"activities": [{"action": "a"}, {"userId": "u"}]}
        )  # 400
        await http.post("/api/activities", json={"userId": "u", "action": "a"}, headers={"Authorization": ""})
    assert sample("activity_events_rejected_total", reason="invalid") - invalid == 1 + 2 + 2
    assert sample("activity_events_rejected_total", reason="too_large") - too_large == 1
    after_401 = sample("activity_http_requests_total", route="/api/activities", method="POST", status="401")
    assert after_401 - refused_401 == 1, "refused before routing, still counted under its route"


class GatedPublisher(InMemoryPublisher):
    """Holds every publish until ``release`` is set: requests stay in progress."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = asyncio.Event()
        self.release = asyncio.Event()

    async def publish(self, activities: list[Activity]) -> None:  # type: ignore[override]
        self.waiting.set()
        await self.release.wait()
        await super().publish(activities)


async def test_beyond_the_ingest_concurrency_bound_the_api_answers_503_at_once() -> None:
    fakes = Fakes(publisher=GatedPublisher())
    publisher = fakes.publisher
    assert isinstance(publisher, GatedPublisher)
    async with serve(fakes, settings(ingest={"max_concurrent_requests": 1})) as http:
        first = asyncio.create_task(http.post("/api/activities", json={"userId": "u", "action": "a"}))
        await publisher.waiting.wait()
        busy = await http.post("/api/activities", json={"userId": "u", "action": "b"})
        reads = await http.get("/api/activities")
        publisher.release.set()
        assert (await first).status_code == 202
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert busy.headers["content-type"] == "application/problem+json"
    assert reads.status_code == 200, "only ingest is shed"
    assert [a.action for a in publisher.published] == ["a"]


async def test_metrics_are_served_in_the_prometheus_format(http: httpx.AsyncClient) -> None:
    await http.get("/api/activities")
    page = await http.get("/metrics")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain")
    assert 'activity_http_requests_total{method="GET",route="/api/activities",status="200"}' in page.text
