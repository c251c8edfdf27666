"""Crafted input answers 400 with a problem naming what is wrong, never a 500, and nothing is published:
strict JSON at the wire (UTF-8 only, no NaN/Infinity, no duplicate key, no integer beyond 64 bits, no
lone surrogate), ISO-8601 date-times only, and the domain's bounds on times and text."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import orjson
import pytest

from tests.http.conftest import Fakes

JSON = {"Content-Type": "application/json"}


def event(**fields: Any) -> dict[str, Any]:
    return {"userId": "u", "action": "a", **fields}


def raw_event(members: str) -> bytes:
    """A body written by hand: ``members`` goes inside the object after userId and action."""
    return ('{"userId": "u", "action": "a", ' + members + "}").encode()


async def refused(http: httpx.AsyncClient, body: bytes, path: str = "/api/activities") -> dict[str, Any]:
    response = await http.post(path, content=body, headers=JSON)
    assert response.status_code == 400, (body[:80], response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    return problem


def messages(problem: dict[str, Any]) -> str:
    return " | ".join(f"{e['field']}: {e['message']}" for e in problem["errors"])


@pytest.mark.parametrize(
    ("members", "said"),
    [
        pytest.param('"metadata": {"v": "\\ud800"}', "surrogate", id="lone-surrogate-in-a-value"),
        pytest.param(
            '"metadata": {"\\ud800": {"$where": 1}}', "surrogate", id="lone-surrogate-key-with-$-child"
        ),
        pytest.param('"metadata": {"v": NaN}', "JSON", id="NaN"),
        pytest.param('"metadata": {"v": Infinity}', "JSON", id="Infinity"),
        pytest.param('"metadata": {"v": 1e400}', "infinity", id="1e400"),
        pytest.param('"metadata": {"v": -1e400}', "infinity", id="-1e400"),
        pytest.param('"metadata": {"v": 123456789012345678901234567890}', "64 bits", id="int-beyond-64-bits"),
        pytest.param('"metadata": {"v": -9223372036854775809}', "64 bits", id="int-below-int64"),
        pytest.param('"action": "b"', "duplicate key 'action'", id="duplicate-top-level-key"),
        pytest.param('"metadata": {"k": 1, "k": 2}', "duplicate key 'k'", id="duplicate-metadata-key"),
        pytest.param(
            '"metadata": {"a\\u003a": 1, "a:": 2}', "duplicate key 'a:'", id="duplicate-hidden-by-escape"
        ),
    ],
)
async def test_bodies_that_are_not_strict_json_are_refused(
    http: httpx.AsyncClient, fakes: Fakes, members: str, said: str
) -> None:
    problem = await refused(http, raw_event(members))
    assert said in messages(problem)
    assert fakes.publisher.published == []


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32", "utf-32-be", "utf-8-sig"])
async def test_bodies_in_another_encoding_than_utf8_are_refused(
    http: httpx.AsyncClient, fakes: Fakes, encoding: str
) -> None:
    problem = await refused(http, json.dumps(event()).encode(encoding))
    assert problem["errors"][0]["field"] == "body"
    assert fakes.publisher.published == []


async def test_a_batch_that_is_not_strict_json_is_refused_whole(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    body = b'{"activities": [{"userId": "u", "action": "a"}, {"userId": "u", "action": "a", "action": "b"}]}'
    assert "duplicate key 'action'" in messages(await refused(http, body, "/api/activities/batch"))
    assert fakes.publisher.published == []


@pytest.mark.parametrize(
    "value",
    [
        "1700000000",
        "1700000000000",
        1700000000,
        "2026-11-26",
        "2026-W48-4",
        "20261126T100000Z",
        "0001-01-01T00:00:00Z",
        "1999-12-31T23:59:59.999Z",
        "9999-12-31T23:59:59-01:00",
    ],
)
async def test_times_must_be_iso_date_times_within_the_documented_bounds(
    http: httpx.AsyncClient, fakes: Fakes, value: Any
) -> None:
    problem = await refused(http, orjson.dumps(event(timestamp=value)))
    assert [e["field"] for e in problem["errors"]] == ["timestamp"]
    assert fakes.publisher.published == []


async def test_sent_at_corrects_a_clock_by_at_most_seven_days(http: httpx.AsyncClient, fakes: Fakes) -> None:
    # The clock says 1526: accepted as is, the correction would move the event 500 years.
    far = event(timestamp="1526-11-26T09:00:00Z", sentAt="1526-11-26T10:00:00Z")
    assert [e["field"] for e in (await refused(http, orjson.dumps(far)))["errors"]] == ["sentAt"]
    ahead = event(timestamp="2026-11-26T09:00:00Z", sentAt="2026-12-26T10:00:00Z")  # a month ahead
    assert "sentAt" in [e["field"] for e in (await refused(http, orjson.dumps(ahead)))["errors"]]
    near = event(timestamp="2026-11-20T09:00:00Z", sentAt="2026-11-20T10:00:00Z")  # 6 days behind
    assert (await http.post("/api/activities", json=near)).status_code == 202
    [published] = fakes.publisher.published
    assert published.timestamp == fakes.clock.now().replace(hour=9)


@pytest.mark.parametrize(
    "text",
    [
        "user\u202eevil",
        "a\u200bb",
        "a\u2066b",
        "\ufeffu",
        "bell\x07",
        "tab\there",
        "line\nbreak",
        "nb\u00a0sp",
        "u\ufe0f",  # a variation selector: prints as "u"
        "\u3164",  # Hangul filler: a letter that prints as nothing
        "a\u034fb",  # combining grapheme joiner
        "\u0301",  # a combining mark with nothing to mark
        "\u2800",  # braille blank
        "x\U000e0100",
    ],
)
@pytest.mark.parametrize("field", ["userId", "action"])
async def test_user_id_and_action_refuse_control_bidi_and_invisible_characters(
    http: httpx.AsyncClient, fakes: Fakes, field: str, text: str
) -> None:
    problem = await refused(http, orjson.dumps(event(**{field: text})))
    assert [e["field"] for e in problem["errors"]] == [field]
    assert fakes.publisher.published == []


@pytest.mark.parametrize(
    "text", ["José", "e\u0301", "김철수", "محمد", "love \u2764\ufe0f", "1\ufe0f\u20e3", "a b"]
)
async def test_user_id_and_action_keep_every_visible_text(http: httpx.AsyncClient, text: str) -> None:
    assert (await http.post("/api/activities", json=event(userId=text, action=text))).status_code == 202


async def test_nul_inside_a_metadata_string_is_refused_at_any_depth(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    problem = await refused(http, orjson.dumps(event(metadata={"a": {"b": ["ok", "x\u0000y"]}})))
    assert [e["field"] for e in problem["errors"]] == ["metadata.a.b[1]"]
    batch = {"activities": [event(metadata={"v": "\u0000"}), event(action="fine")]}
    answer = await http.post("/api/activities/batch", json=batch)
    assert answer.status_code == 202
    assert [r["status"] for r in answer.json()["results"]] == ["rejected", "accepted"]
    assert [a.action for a in fakes.publisher.published] == ["fine"]


async def test_a_cursor_whose_time_has_no_utc_equivalent_is_a_400(http: httpx.AsyncClient) -> None:
    listing = await http.get("/api/activities", params={"cursor": ""})
    fingerprint = json.loads(base64.urlsafe_b64decode(listing.json()["nextCursor"] or "e30=" + "=="))
    token = base64.urlsafe_b64encode(
        orjson.dumps({"t": "9999-12-31T23:59:59-01:00", "i": "x", "f": fingerprint.get("f", "")})
    ).decode()
    answer = await http.get("/api/activities", params={"cursor": token.rstrip("=")})
    assert answer.status_code == 400, answer.text
    assert answer.json()["errors"][0]["field"] == "cursor"


@pytest.mark.parametrize("forged_id", ["\u0000", "", "x" * 129, "../x", 7, None])
async def test_a_cursor_whose_id_no_event_can_have_is_a_400(
    http: httpx.AsyncClient, fakes: Fakes, forged_id: Any
) -> None:
    for _ in range(2):
        assert (await http.post("/api/activities", json=event())).status_code == 202
    await fakes.repository.add_many(fakes.publisher.published)
    listing = await http.get("/api/activities", params={"cursor": "", "limit": 1})
    given = listing.json()["nextCursor"]
    real = orjson.loads(base64.urlsafe_b64decode(given + "=="))
    assert (await http.get("/api/activities", params={"cursor": given})).status_code == 200
    token = base64.urlsafe_b64encode(orjson.dumps({**real, "i": forged_id})).decode()
    answer = await http.get("/api/activities", params={"cursor": token.rstrip("=")})
    assert answer.status_code == 400, answer.text
    assert answer.json()["errors"][0]["field"] == "cursor"


async def test_what_strict_json_allows_is_still_accepted(http: httpx.AsyncClient, fakes: Fakes) -> None:
    bodies = [
        raw_event('"metadata": {"name": "Zo\\u00eb \\u2603", "emoji": "\U0001f600", "t": "10:00:01"}'),
        raw_event('"metadata": {"a\\u003a": 1, "b:": "c:d", "big": 9223372036854775807}'),
        raw_event('"metadata": {"neg": -9223372036854775808}'),
        raw_event(
            '"metadata": {"order": "12345678901234567890123", "f": 1.5e300, "g": 12345678901234567890.5}'
        ),
        raw_event('"timestamp": "2026-11-26T11:00:00+01:00", "sentAt": "2026-11-26t10:00:00z"'),
        raw_event('"metadata": {"x": "e+", "y": 1e+20}'),
        json.dumps(event(userId="Zoë 🎉 user", action="page view")).encode(),
    ]
    for body in bodies:
        response = await http.post("/api/activities", content=body, headers=JSON)
        assert response.status_code == 202, (body, response.text)
    assert fakes.publisher.published[0].metadata["name"] == "Zoë ☃"
    assert fakes.publisher.published[1].metadata["a:"] == 1


@pytest.mark.parametrize("path", ["/api/activities", "/api/activities/stats", "/api/activities/stream"])
async def test_a_filter_that_holds_one_value_refuses_two(http: httpx.AsyncClient, path: str) -> None:
    """FastAPI kept one of the values and dropped the rest unsaid: userId=a&userId=b read one user's
    events (found by the fuzz suite on the live tail)."""
    response = await http.get(path, params=[("userId", "a"), ("userId", "b")])
    assert response.status_code == 400, (path, response.status_code, response.text[:200])
    assert [e["field"] for e in response.json()["errors"]] == ["userId"]
    assert "more than once" in messages(response.json())


async def test_a_list_filter_still_repeats(http: httpx.AsyncClient) -> None:
    assert (await http.get("/api/activities", params=[("action", "a"), ("action", "b")])).status_code == 200
