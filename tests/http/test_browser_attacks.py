"""The browser routes as an attacker sees them: crafted and repeated Origin headers, the ``null`` origin,
keys in the query (a secret one is refused and never logged), oversized beacons, gzip bombs, deflate in
both framings, stacked or unknown codings, and preflights for what is not allowed. Every bad input is a
4xx problem+json that says why, never a 500, and nothing is published."""

from __future__ import annotations

import gzip
import json
import logging
import zlib
from typing import Any

import pytest

from tests.http.conftest import FULL_KEY, Fakes, serve
from tests.http.test_browsers import BEACON, EVENT, SHOP, SHOP_KEY, config

BODY = json.dumps(EVENT).encode()


def beacon(**headers: str) -> list[tuple[str, str]]:
    return [("Origin", SHOP), ("Content-Type", BEACON["content-type"]), *headers.items()]


def assert_problem(answer: Any, status: int, says: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert says.lower() in answer.json()["detail"].lower(), answer.json()["detail"]


@pytest.mark.parametrize(
    ("headers", "says"),
    [
        ([("Origin", f"{SHOP}, https://evil.example")], "comes from"),
        ([("Origin", f"{SHOP}/")], "comes from"),
        ([("Origin", SHOP.upper())], "comes from"),
        ([("Origin", "null")], "comes from 'null'"),
        ([("Origin", SHOP + "x" * 20_000)], "comes from"),
        ([("Origin", SHOP), ("Origin", "https://evil.example")], "more than one Origin"),
        ([("Origin", "https://evil.example"), ("Origin", SHOP)], "more than one Origin"),
        ([], "carries no Origin"),
    ],
    ids=["list", "slash", "upper-case", "null", "long", "two-then-evil", "evil-then-two", "none"],
)
async def test_crafted_origins_are_refused(fakes: Fakes, headers: list[tuple[str, str]], says: str) -> None:
    async with serve(fakes, config(), key=None) as http:
        refused = await http.post(
            "/api/activities",
            params={"key": SHOP_KEY},
            content=BODY,
            headers=[*headers, ("Content-Type", "text/plain")],
        )
        assert_problem(refused, 403, says)
        assert len(refused.json()["detail"]) < 400, "an attacker's origin is not echoed whole"
    assert fakes.publisher.published == []


async def test_an_origin_in_latin_1_bytes_is_refused(fakes: Fakes) -> None:
    async with serve(fakes, config(), key=None) as http:
        refused = await http.post(
            "/api/activities",
            params={"key": SHOP_KEY},
            content=BODY,
            headers=[(b"Origin", "https://shop.exämple".encode("latin-1")), (b"Content-Type", b"text/plain")],
        )
        assert_problem(refused, 403, "comes from")


@pytest.mark.parametrize(
    ("query", "status", "says"),
    [
        (f"key={FULL_KEY}", 400, "is secret"),
        (f"%6Bey={FULL_KEY}", 400, "is secret"),  # the name as any server decodes it
        (f"key={SHOP_KEY}&key={SHOP_KEY}", 400, "more than once"),
        ("key=", 401, "Send an API key"),
        ("key=%ZZ", 401, "not valid"),
        ("key=%00", 401, "not valid"),
        ("key=%FF%FE", 401, "not valid"),
        ("key=" + "k" * 5_000, 401, "not valid"),
    ],
    ids=["secret", "encoded-name", "twice", "empty", "bad-escape", "nul", "not-utf-8", "long"],
)
async def test_keys_in_the_query_that_are_no_publishable_key_are_refused_and_never_logged(
    fakes: Fakes, caplog: pytest.LogCaptureFixture, query: str, status: int, says: str
) -> None:
    caplog.set_level(logging.DEBUG)
    async with serve(fakes, config(), key=None) as http:
        refused = await http.post(f"/api/activities?{query}", content=BODY, headers=beacon())
        assert_problem(refused, status, says)
        assert FULL_KEY not in refused.text
    # The server's records only: the test's own client (httpx) logs the URLs it calls. The access log
    # (uvicorn's, not in process here) is checked in tests/unit/test_redaction.py and tests/browser.
    served = [r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert all(FULL_KEY not in line for line in served), served
    assert fakes.publisher.published == []


@pytest.mark.parametrize(
    ("content", "encoding", "status", "says"),
    [
        (b" " * 40_000, None, 413, "larger than"),
        (gzip.compress(b" " * 40_000), "gzip", 413, "than"),  # the limit, or the ratio first
        (gzip.compress(b"\0" * 10_000_000), "gzip", 413, "decompressed"),
        (zlib.compress(b"\0" * 10_000_000), "deflate", 413, "decompressed"),
        (gzip.compress(BODY)[:-6], "gzip", 400, "truncated"),
        (gzip.compress(BODY), "deflate", 400, "not a valid deflate"),
        (zlib.compress(BODY), "gzip", 400, "not a valid gzip"),
        (gzip.compress(gzip.compress(BODY)), "gzip, gzip", 415, "Content-Encoding"),
        (BODY, "br", 415, "Content-Encoding"),
        (BODY, "gzip;q=1", 415, "Content-Encoding"),
        (b"\xef\xbb\xbf" + BODY, None, 400, "not valid"),
        (b"", None, 400, "not valid"),
    ],
    ids=[
        "oversized",
        "oversized-inflated",
        "gzip-bomb",
        "deflate-bomb",
        "truncated",
        "gzip-as-deflate",
        "zlib-as-gzip",
        "stacked",
        "unknown",
        "parameter",
        "bom",
        "empty",
    ],
)
async def test_bad_beacon_bodies_are_4xx_problems(
    fakes: Fakes, content: bytes, encoding: str | None, status: int, says: str
) -> None:
    headers = beacon(**({"Content-Encoding": encoding} if encoding else {}))
    async with serve(fakes, config(), key=None) as http:
        refused = await http.post(
            "/api/activities", params={"key": SHOP_KEY}, content=content, headers=headers
        )
        assert_problem(refused, status, says)
        assert refused.headers["access-control-allow-origin"] == SHOP, "the page may read why"
        if status == 415 and "Content-Encoding" in says:
            assert refused.headers["accept-encoding"] == "gzip, deflate"
    assert fakes.publisher.published == []


async def test_two_content_encoding_lines_are_stacked_codings(fakes: Fakes) -> None:
    headers = [*beacon(), ("Content-Encoding", "gzip"), ("Content-Encoding", "gzip")]
    async with serve(fakes, config(), key=None) as http:
        refused = await http.post(
            "/api/activities",
            params={"key": SHOP_KEY},
            content=gzip.compress(gzip.compress(BODY)),
            headers=headers,
        )
        assert_problem(refused, 415, "Content-Encoding")


@pytest.mark.parametrize(
    ("framing", "content"),
    [("zlib", zlib.compress(BODY)), ("raw", zlib.compress(BODY)[2:-4])],
)
async def test_deflate_is_taken_in_both_framings(fakes: Fakes, framing: str, content: bytes) -> None:
    async with serve(fakes, config(), key=None) as http:
        taken = await http.post(
            "/api/activities",
            params={"key": SHOP_KEY},
            content=content,
            headers=beacon(**{"Content-Encoding": "deflate"}),
        )
        assert taken.status_code == 202, (framing, taken.text)


@pytest.mark.parametrize(
    ("origin", "method", "request_headers", "says"),
    [
        (SHOP, "PUT", None, "may only POST"),
        (SHOP, "DELETE", None, "may only POST"),
        (SHOP, "GET", None, "may only POST"),
        (SHOP, "post", None, "may only POST"),  # methods are case-sensitive; browsers send POST
        (SHOP, "POST", "x-evil", "x-evil"),
        (SHOP, "POST", "content-type, cookie", "cookie"),
        ("null", "POST", None, "may not call"),
        ("https://evil.example", "POST", None, "may not call"),
    ],
)
async def test_preflights_for_what_is_not_allowed_are_400_problems_without_cors(
    fakes: Fakes, origin: str, method: str, request_headers: str | None, says: str
) -> None:
    headers = {"Origin": origin, "Access-Control-Request-Method": method}
    if request_headers is not None:
        headers["Access-Control-Request-Headers"] = request_headers
    async with serve(fakes, config(), key=None) as http:
        for path in ("/api/activities", "/api/activities/batch"):
            refused = await http.options(path, headers=headers)
            assert_problem(refused, 400, says)
            assert "access-control-allow-origin" not in refused.headers
        other_route = await http.options(
            "/api/users/u/activities", headers={"Origin": SHOP, "Access-Control-Request-Method": "POST"}
        )
        assert_problem(other_route, 400, "may not call")
