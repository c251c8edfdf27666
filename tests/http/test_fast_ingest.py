"""The ingest fast path (fast_ingest.py) answers exactly as FastAPI's routes do: every request below is
sent to two apps over fresh fakes, one with the fast path and one without, and the two answers must be
the same status, headers (but the request id) and bytes, and publish the same events. Valid bodies
never reach the router on the fast side; refused ones go on to the route."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from activity_service.infrastructure.rate_limit import TokenBuckets
from tests.http.conftest import FULL_KEY, PEER, Fakes, bearer, started

JSON = [("content-type", "application/json")]
ITEM = {"userId": "u1", "action": "page_view", "metadata": {"path": "/pricing", "ünï": "çødé ✓"}}
Request = tuple[str, list[tuple[str, str]], bytes]
"""path, headers, body."""


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def _one(body: Any, *headers: tuple[str, str]) -> Request:
    return ("/api/activities", [*JSON, *headers], _json(body))


def _batch(body: Any, *headers: tuple[str, str]) -> Request:
    return ("/api/activities/batch", [*JSON, *headers], _json(body))


GZIP = ("content-encoding", "gzip")
KEY_1, KEY_2 = ("Idempotency-Key", "key-1"), ("Idempotency-Key", "key-2")


CASES: dict[str, list[Request]] = {
    "one valid": [_one(ITEM)],
    "every field": [
        _one(
            {
                **ITEM,
                "id": "client-1",
                "timestamp": "2026-11-26T10:00:00.000Z",
                "sentAt": "2026-11-26T10:00:01.000Z",
            }
        )
    ],
    "idempotency key": [_one(ITEM, KEY_1)] * 2,
    "idempotency key twice": [_one(ITEM, KEY_1, KEY_2), _one(ITEM, KEY_2, KEY_1)],
    "bad idempotency key": [
        _one(ITEM, ("Idempotency-Key", "not an id!")),
        _one(ITEM, ("Idempotency-Key", "")),
    ],
    "idempotency key against the body's id": [_one({**ITEM, "id": "a"}, KEY_1)],
    "resend, then a conflict": [_one({**ITEM, "id": "c-1"}), _one({**ITEM, "id": "c-1"})]
    + [_one({**ITEM, "id": "c-1", "action": "other"})],
    "domain refusal after the schema": [_one({"userId": "u", "action": "   "})],
    "schema refusals": [
        _one({}),
        _one({"userId": 5, "action": "x"}),
        _one({**ITEM, "receivedAt": "2026-01-01T00:00:00Z"}),
        _one([1, 2]),
        _one(None),
        ("/api/activities", JSON, b"{nope"),
        ("/api/activities", JSON, b""),
        ("/api/activities", JSON, b'{"userId": "u", "userId": "v", "action": "x"}'),
        ("/api/activities", JSON, b'{"userId": "u", "action": "x", "metadata": {"n": NaN}}'),
    ],
    "batch valid": [_batch({"activities": [ITEM, {**ITEM, "id": "b-1"}]})],
    "batch partly valid": [_batch({"activities": [ITEM, {"userId": ""}, {"userId": "u", "action": " "}]})],
    "batch none valid": [_batch({"activities": [{"userId": ""}, 5]})],
    "batch shapes refused": [
        _batch({"activities": []}),
        _batch({"activities": [ITEM], "extra": 1}),
        _batch([ITEM]),
        _batch({"activities": ITEM}),
    ],
    "batch over its items": [_batch({"activities": [ITEM] * 501})],
    "batch with a conflict": [_batch({"activities": [{**ITEM, "id": "d"}]})]
    + [_batch({"activities": [{**ITEM, "id": "d", "action": "x"}, ITEM]})],
    "compressed": [
        ("/api/activities", [*JSON, GZIP], gzip.compress(_json(ITEM))),
        ("/api/activities/batch", [*JSON, GZIP], gzip.compress(_json({"activities": [ITEM]}))),
    ],
}


class Observed:
    """The app, remembering whether each request reached FastAPI's router (which names an endpoint in
    the request's scope)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.routed: list[bool] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
        if scope["type"] == "http":
            self.routed.append("endpoint" in scope)


@asynccontextmanager
async def _client(
    fast: bool, fakes: Fakes, limiter: TokenBuckets | None, root_path: str
) -> AsyncIterator[tuple[httpx.AsyncClient, Observed]]:
    async with started(fakes, rate_limiter=limiter, fast_ingest=fast) as app:
        observed = Observed(app)
        transport = httpx.ASGITransport(app=observed, client=PEER, root_path=root_path)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api.test", headers=bearer(FULL_KEY)
        ) as client:
            yield client, observed


def _answer(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [(k, v) for k, v in response.headers.multi_items() if k != "x-request-id"]
    return response.status_code, headers, response.content


async def _both(
    requests: list[Request], *, down: bool = False, limited: bool = False, root_path: str = ""
) -> list[list[bool]]:
    answers, routed, published = [], [], []
    for fast in (True, False):
        fakes = Fakes()
        fakes.publisher.down = down
        limiter = TokenBuckets(1, 3, monotonic=lambda: 5_000.0) if limited else None
        async with _client(fast, fakes, limiter, root_path) as (client, observed):
            side = []
            for path, headers, body in requests:
                response = await client.post(root_path + path, content=body, headers=headers)
                side.append(_answer(response))
            answers.append(side)
            routed.append(observed.routed)
        published.append([(a.id, a.user_id, a.action, a.metadata) for a in fakes.publisher.published])
    assert answers[0] == answers[1]
    assert published[0] == published[1]
    return routed


@pytest.mark.parametrize("case", sorted(CASES))
async def test_the_fast_path_answers_as_the_route_does(case: str) -> None:
    await _both(CASES[case])


async def test_valid_bodies_never_reach_the_router() -> None:
    """(Uncompressed: the guard hands an inflated body on in a scope of its own, which Observed does not
    see.)"""
    fast, slow = await _both([_one(ITEM), _batch({"activities": [ITEM, {"userId": ""}]}), _one({}), _one(5)])
    assert fast == [False, False, True, True]
    assert slow == [True] * 4


async def test_an_unavailable_broker_and_a_rate_limit_answer_alike() -> None:
    await _both([_one(ITEM), _batch({"activities": [ITEM]})], down=True)
    await _both(
        [
            _batch({"activities": [ITEM] * 2}),
            _batch({"activities": [ITEM] * 2}),
            _batch({"activities": [ITEM] * 9}),
        ],
        limited=True,
    )


async def test_location_and_root_path_answer_alike() -> None:
    fast, _ = await _both([_one(ITEM), _one({})], root_path="/ingest")
    assert fast == [False, True]
