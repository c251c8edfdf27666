"""The live tail through the real API process: an event posted appears on an open stream within a
second of its 202, and a stream resumed with Last-Event-ID after a dropped connection misses nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx

from tests.e2e.processes import AUTH_HEADERS, Deployment


def events(lines: Iterator[str]) -> Iterator[dict[str, str]]:
    event: dict[str, str] = {}
    for line in lines:
        if not line:
            if event:
                yield event
            event = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            event[name] = value


def test_a_posted_event_is_on_the_stream_within_a_second_and_a_resumed_stream_misses_nothing(
    deployment: Deployment,
) -> None:
    _, base_url = deployment.start_api()
    with httpx.Client(base_url=base_url, headers=AUTH_HEADERS, timeout=30) as http:
        with http.stream("GET", "/api/activities/stream") as live:
            assert live.status_code == 200
            received = events(live.iter_lines())
            assert next(received)["event"] == "ready"
            posted = time.monotonic()
            assert (
                http.post(
                    "/api/activities", json={"userId": "live", "action": "view", "id": "live-1"}
                ).status_code
                == 202
            )
            first = next(received)
            arrived = time.monotonic()
        assert json.loads(first["data"])["id"] == "live-1" and first["event"] == "accepted"
        assert arrived - posted < 1.0, f"the event took {arrived - posted:.2f}s to arrive"

        # The connection dropped after live-1; two more are accepted meanwhile.
        for event_id in ("live-2", "live-3"):
            assert (
                http.post(
                    "/api/activities", json={"userId": "live", "action": "view", "id": event_id}
                ).status_code
                == 202
            )
        with http.stream("GET", "/api/activities/stream", headers={"Last-Event-ID": first["id"]}) as resumed:
            received = events(resumed.iter_lines())
            assert next(received)["event"] == "ready"
            ids = [json.loads(next(received)["data"])["id"] for _ in range(2)]
    assert ids == ["live-2", "live-3"]
