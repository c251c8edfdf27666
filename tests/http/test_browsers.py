"""Browser ingest in-process: publishable keys (write only, from their origins, in a header or the query),
secret keys refused in the query, text/plain beacon bodies, CORS answers and preflights for the keys'
origins, the per-address rate limit of publishable keys, and the SDK script itself."""

from __future__ import annotations

import gzip
import json
from typing import Any

import httpx
import pytest

from activity_service.infrastructure.rate_limit import TokenBuckets
from tests.http.conftest import (
    ERASE,
    FULL_KEY,
    KEYS,
    READ,
    WRITE,
    WRITER_KEY,
    Fakes,
    bearer,
    serve,
    settings,
)

SHOP = "https://shop.example"
LOCAL_DEV = "http://localhost:3000"
OTHER_SHOP = "https://other.example"
SHOP_KEY = "pk-shop-web-0123456789"
OTHER_KEY = "pk-other-web-0123456789"
BROWSER_KEYS = [
    *KEYS,
    {
        "name": "shop-web",
        "tenant": "shop",
        "key": SHOP_KEY,
        "scopes": [WRITE],
        "publishable": True,
        "origins": [SHOP, LOCAL_DEV],
    },
    {"name": "other-web", "key": OTHER_KEY, "scopes": [WRITE], "publishable": True, "origins": [OTHER_SHOP]},
]
EVENT = {"userId": "visitor-1", "action": "page_view", "metadata": {"path": "/"}}
BEACON = {"content-type": "text/plain;charset=UTF-8"}  # what navigator.sendBeacon sends for a string


def config(**extra: Any) -> Any:
    return settings(keys=BROWSER_KEYS, **extra)


def stopped_clock(rate: float, burst: int) -> TokenBuckets:
    return TokenBuckets(rate, burst, monotonic=lambda: 5_000.0)


def from_shop(**headers: str) -> dict[str, str]:
    return {"Origin": SHOP, **headers}


async def test_a_publishable_key_writes_into_its_tenant_from_its_origins(fakes: Fakes) -> None:
    async with serve(fakes, config(), key=None) as http:
        in_header = await http.post(
            "/api/activities", json=EVENT, headers=from_shop(**{"X-API-Key": SHOP_KEY})
        )
        assert in_header.status_code == 202, in_header.text
        in_query = await http.post(
            "/api/activities/batch",
            params={"key": SHOP_KEY},
            json={"activities": [EVENT]},
            headers=from_shop(),
        )
        assert in_query.status_code == 202, in_query.text
        local = await http.post(
            "/api/activities", params={"key": SHOP_KEY}, json=EVENT, headers={"Origin": LOCAL_DEV}
        )
        assert local.status_code == 202
    assert {(a.tenant, a.source) for a in fakes.publisher.published} == {("shop", "shop-web")}
    assert len(fakes.publisher.published) == 3


@pytest.mark.parametrize(
    "origin",
    [
        None,
        "null",
        OTHER_SHOP,
        "https://shop.example.evil",
        "http://shop.example",
        "https://SHOP.example:444",
    ],
)
async def test_a_publishable_key_from_another_origin_or_none_is_a_403(
    fakes: Fakes, origin: str | None
) -> None:
    headers = {} if origin is None else {"Origin": origin}
    async with serve(fakes, config(), key=None) as http:
        refused = await http.post("/api/activities", params={"key": SHOP_KEY}, json=EVENT, headers=headers)
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert "origin" in refused.json()["detail"].lower()
        assert LOCAL_DEV not in refused.json()["detail"], "the key's origins are not listed to a stranger"
    assert fakes.publisher.published == []


async def test_a_publishable_key_only_records_activities(fakes: Fakes) -> None:
    protected = config(auth={"protect_docs": True, "protect_metrics": True})
    async with serve(fakes, protected, key=None) as http:
        key = {"X-API-Key": SHOP_KEY}
        for method, path in [
            ("GET", "/api/activities"),
            ("GET", "/api/activities/some-id"),
            ("DELETE", "/api/users/visitor-1/activities"),
            ("GET", "/docs"),
            ("GET", "/openapi.json"),
            ("GET", "/metrics"),
        ]:
            refused = await http.request(method, path, headers=from_shop(**key))
            assert refused.status_code == 403, (method, path, refused.text)
            in_query = await http.request(method, path, params={"key": SHOP_KEY}, headers=from_shop())
            assert in_query.status_code == 403, (method, path, in_query.text)


async def test_a_secret_key_in_the_query_is_refused_and_never_used(fakes: Fakes) -> None:
    async with serve(fakes, config(), key=None) as http:
        for secret in (FULL_KEY, WRITER_KEY):
            refused = await http.post(
                "/api/activities", params={"key": secret}, json=EVENT, headers=from_shop()
            )
            assert refused.status_code == 400, refused.text
            assert 'error="invalid_request"' in refused.headers["www-authenticate"]
            detail = refused.json()["detail"]
            assert "Authorization header" in detail and "replace it" in detail
            assert secret not in refused.text
        read = await http.get("/api/activities", params={"key": FULL_KEY})
        assert read.status_code == 400, "a secret key in a URL reads nothing either"
        unknown = await http.post("/api/activities", params={"key": "not-a-key-0123456789"}, json=EVENT)
        assert unknown.status_code == 401
        twice = await http.post(
            "/api/activities", params={"key": SHOP_KEY}, json=EVENT, headers=from_shop(**bearer(SHOP_KEY))
        )
        assert twice.status_code == 400
        repeated = await http.post(
            "/api/activities", params=[("key", SHOP_KEY), ("key", SHOP_KEY)], json=EVENT, headers=from_shop()
        )
        assert repeated.status_code == 400
    assert fakes.publisher.published == []


async def test_a_key_in_the_body_is_not_a_key(fakes: Fakes) -> None:
    """Keys travel in a header or the query only: the gate decides before the body is read, and a
    beacon can carry its key in the URL. A `key` field is an unknown field like any other."""
    async with serve(fakes, config(), key=None) as http:
        body = json.dumps({"key": SHOP_KEY, "activities": [EVENT]})
        no_key = await http.post("/api/activities/batch", content=body, headers=from_shop(**BEACON))
        assert no_key.status_code == 401
        keyed = await http.post(
            "/api/activities/batch", params={"key": SHOP_KEY}, content=body, headers=from_shop(**BEACON)
        )
        assert keyed.status_code == 400 and keyed.json()["errors"][0]["field"] == "key"


async def test_beacon_bodies_are_text_plain_json_from_publishable_keys_only(fakes: Fakes) -> None:
    batch = json.dumps({"activities": [EVENT, {**EVENT, "action": "leave"}]})
    async with serve(fakes, config(), key=None) as http:
        beacon = await http.post(
            "/api/activities/batch", params={"key": SHOP_KEY}, content=batch, headers=from_shop(**BEACON)
        )
        assert beacon.status_code == 202 and beacon.json()["accepted"] == 2, beacon.text
        single = await http.post(
            "/api/activities",
            params={"key": SHOP_KEY},
            content=json.dumps(EVENT),
            headers=from_shop(**{"content-type": "text/plain"}),
        )
        assert single.status_code == 202
        gzipped = await http.post(
            "/api/activities/batch",
            params={"key": SHOP_KEY},
            content=gzip.compress(batch.encode()),
            headers=from_shop(**BEACON, **{"content-encoding": "gzip"}),
        )
        assert gzipped.status_code == 202
        not_json = await http.post(
            "/api/activities", params={"key": SHOP_KEY}, content="hello", headers=from_shop(**BEACON)
        )
        assert not_json.status_code == 400
        latin1 = await http.post(
            "/api/activities",
            params={"key": SHOP_KEY},
            content=json.dumps(EVENT),
            headers=from_shop(**{"content-type": "text/plain; charset=iso-8859-1"}),
        )
        assert latin1.status_code == 415
        form = await http.post("/api/activities", params={"key": SHOP_KEY}, data=EVENT, headers=from_shop())
        assert form.status_code == 415
        for secret in (FULL_KEY, WRITER_KEY):
            refused = await http.post(
                "/api/activities/batch", content=batch, headers={**bearer(secret), **BEACON}
            )
            assert refused.status_code == 415, refused.text
            assert "publishable" in refused.json()["detail"]
    assert len(fakes.publisher.published) == 5
    async with serve(fakes, settings(auth={"enabled": False}), key=None) as open_api:
        assert (
            await open_api.post("/api/activities", content=json.dumps(EVENT), headers=BEACON)
        ).status_code == 415


async def test_cors_answers_the_publishable_keys_origins_on_the_ingest_routes(fakes: Fakes) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, x-api-key",
    }
    async with serve(fakes, config(), key=None) as http:
        for path in ("/api/activities", "/api/activities/batch"):
            allowed = await http.options(path, headers=from_shop(**preflight))
            assert allowed.status_code == 200, allowed.text
            assert allowed.headers["access-control-allow-origin"] == SHOP
            assert allowed.headers["access-control-allow-methods"] == "POST"
            assert {"content-type", "x-api-key", "content-encoding"} <= {
                h.strip() for h in allowed.headers["access-control-allow-headers"].split(",")
            }
            assert "Origin" in allowed.headers["vary"]
            assert "access-control-allow-credentials" not in allowed.headers
        for origin, path, method in [
            ("https://evil.example", "/api/activities", "POST"),
            (SHOP, "/api/activities", "GET"),  # a publishable key's origin may only POST activities
            (SHOP, "/api/users/visitor-1/activities", "DELETE"),
        ]:
            refused = await http.options(
                path, headers={"Origin": origin, "Access-Control-Request-Method": method}
            )
            assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
        odd_header = await http.options(
            "/api/activities", headers=from_shop(**{**preflight, "Access-Control-Request-Headers": "x-evil"})
        )
        assert odd_header.status_code == 400

        posted = await http.post("/api/activities", params={"key": SHOP_KEY}, json=EVENT, headers=from_shop())
        assert posted.headers["access-control-allow-origin"] == SHOP and posted.headers["vary"] == "Origin"
        exposed = {h.strip().lower() for h in posted.headers["access-control-expose-headers"].split(",")}
        assert {"retry-after", "ratelimit", "location"} <= exposed
        # Errors too: a page must read why (a 400's items, a 429's Retry-After).
        invalid = await http.post("/api/activities", params={"key": SHOP_KEY}, json={}, headers=from_shop())
        assert invalid.status_code == 400 and invalid.headers["access-control-allow-origin"] == SHOP
        evil = await http.post(
            "/api/activities",
            params={"key": SHOP_KEY},
            json=EVENT,
            headers={"Origin": "https://evil.example"},
        )
        assert evil.status_code == 403 and "access-control-allow-origin" not in evil.headers
        read = await http.get("/api/activities", headers=from_shop(**bearer(FULL_KEY)))
        assert read.status_code == 200 and "access-control-allow-origin" not in read.headers


async def test_api_cors_origins_still_reach_every_route_beside_the_keys_origins(fakes: Fakes) -> None:
    dashboard = "https://dashboard.example.com"
    async with serve(fakes, config(api={"cors_origins": dashboard})) as http:
        read = await http.get("/api/activities", headers={"Origin": dashboard})
        assert read.headers["access-control-allow-origin"] == dashboard
        preflight = await http.options(
            "/api/activities", headers={"Origin": dashboard, "Access-Control-Request-Method": "GET"}
        )
        assert (
            preflight.status_code == 200 and preflight.headers["access-control-allow-methods"] == "GET, POST"
        )


async def test_api_cors_origins_star_is_any_origin_but_the_null_one(fakes: Fakes) -> None:
    async with serve(fakes, config(api={"cors_origins": "*"})) as http:
        read = await http.get("/api/activities", headers={"Origin": "https://any.example"})
        assert read.headers["access-control-allow-origin"] == "https://any.example"
        for origin in ("null", "https://any.example"):
            preflight = await http.options(
                "/api/activities", headers={"Origin": origin, "Access-Control-Request-Method": "GET"}
            )
            assert preflight.status_code == (400 if origin == "null" else 200), origin


async def test_a_publishable_key_is_limited_per_client_address_as_well_as_per_key(fakes: Fakes) -> None:
    proxied = config(api={"trusted_proxies": "127.0.0.1"})
    limits = {"rate_limiter": stopped_clock(0.01, 8), "address_limiter": stopped_clock(0.01, 3)}
    async with serve(fakes, proxied, key=None, **limits) as http:

        async def post_from(address: str, key: str = SHOP_KEY, count: int = 1) -> httpx.Response:
            origin = OTHER_SHOP if key == OTHER_KEY else SHOP
            return await http.post(
                "/api/activities/batch",
                params={"key": key},
                json={"activities": [EVENT] * count},
                headers={"Origin": origin, "X-Forwarded-For": address},
            )

        answers = [await post_from("198.51.100.1") for _ in range(4)]
        assert [a.status_code for a in answers] == [202, 202, 202, 429]
        assert answers[0].headers["ratelimit-policy"] == '"default";q=8;w=800, "address";q=3;w=300'
        assert answers[2].headers["ratelimit"].endswith('"address";r=0;t=300')
        refused = answers[3]
        assert "client address" in refused.json()["detail"] and refused.headers["retry-after"] == "100"
        assert refused.headers["access-control-allow-origin"] == SHOP, "the page can read when to retry"
        # Another address has its own share; the key's budget (8) is what they all share.
        assert (await post_from("198.51.100.2", count=3)).status_code == 202
        assert (await post_from("198.51.100.3", count=3)).status_code == 429  # 3 + 3 > 8 - 3: the key's
        # An IPv6 host holds its whole /64: its addresses share one bucket (another key, a fresh budget).
        assert (await post_from("2001:db8:1:2::1", key=OTHER_KEY, count=2)).status_code == 202
        assert (await post_from("2001:db8:1:2:abcd::ffff", key=OTHER_KEY, count=2)).status_code == 429
        assert (await post_from("2001:db8:1:3::1", key=OTHER_KEY, count=3)).status_code == 202
        # A batch larger than an address's bucket could never pass.
        assert (await post_from("198.51.100.9", key=OTHER_KEY, count=4)).status_code == 413
        # Secret keys have no address bucket.
        secret = [
            await http.post(
                "/api/activities", json=EVENT, headers={**bearer(WRITER_KEY), "X-Forwarded-For": "192.0.2.1"}
            )
            for _ in range(5)
        ]
        assert [s.status_code for s in secret] == [202] * 5 and "address" not in secret[0].headers[
            "ratelimit"
        ]


async def test_the_sdk_script_is_open_small_cacheable_and_importable_cross_origin(fakes: Fakes) -> None:
    async with serve(fakes, config(auth={"protect_docs": True, "protect_metrics": True}), key=None) as http:
        script = await http.get("/sdk/activity.js", headers={"Origin": SHOP})
        assert script.status_code == 200
        assert script.headers["content-type"] == "text/javascript; charset=utf-8"
        assert script.headers["access-control-allow-origin"] == "*"  # a module script is fetched with CORS
        cache = script.headers["cache-control"]
        assert cache.startswith("public") and int(cache.split("max-age=")[1]) >= 86_400
        assert "export function track" in script.text and "export function init" in script.text
        assert len(gzip.compress(script.content, 9)) <= 5 * 1024, "the SDK must stay within 5 KB gzipped"
        again = await http.get("/sdk/activity.js", headers={"If-None-Match": script.headers["etag"]})
        assert again.status_code == 304 and again.content == b""


async def test_publishable_keys_need_scopes_and_origins_that_fit(fakes: Fakes) -> None:
    from pydantic import ValidationError

    for entry, says in [
        ({"scopes": [WRITE, READ], "origins": [SHOP]}, "remove activities:read"),
        ({"scopes": [WRITE, ERASE], "origins": [SHOP]}, "remove activities:erase"),
        ({"scopes": [WRITE]}, "needs `origins`"),
        ({"scopes": [WRITE], "origins": ["https://shop.example/path"]}, "not a web origin"),
        ({"scopes": [WRITE], "origins": ["*"]}, "not a web origin"),
    ]:
        with pytest.raises(ValidationError, match=says) as refused:
            settings(keys=[{"name": "web", "key": SHOP_KEY, "publishable": True, **entry}])
        assert SHOP_KEY not in str(refused.value)
    with pytest.raises(ValidationError, match="only for a publishable key"):
        settings(keys=[{"name": "web", "key": SHOP_KEY, "scopes": [WRITE], "origins": [SHOP]}])
    normalized = settings(
        keys=[
            {
                "name": "web",
                "key": SHOP_KEY,
                "scopes": [WRITE],
                "publishable": True,
                "origins": ["HTTPS://Shop.Example:443/"],
            }
        ]
    )
    assert normalized.auth.api_keys[0].origins == (SHOP,)


async def test_the_openapi_document_says_how_browsers_send(fakes: Fakes) -> None:
    async with serve(fakes, config()) as http:
        document = (await http.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["publishableKey"] == {**schemes["publishableKey"], "in": "query", "name": "key"}
    for path in ("/api/activities", "/api/activities/batch"):
        post = document["paths"][path]["post"]
        assert {"publishableKey": []} in post["security"] and {"bearer": []} in post["security"]
        assert set(post["requestBody"]["content"]) == {"application/json", "text/plain"}
        assert "Content-Encoding" in {p["name"] for p in post["parameters"]}
        for status in ("400", "401", "403", "413", "415", "429", "503"):
            assert set(post["responses"][status]["content"]) == {"application/problem+json"}, status
        assert "?key=" in post["responses"]["400"]["description"]
        assert "origin" in post["responses"]["403"]["description"]
    read = document["paths"]["/api/activities"]["get"]
    assert {"publishableKey": []} not in read["security"]
    script = document["paths"]["/sdk/activity.js"]["get"]
    assert "security" not in script and set(script["responses"]) == {"200", "304"}
    assert set(script["responses"]["200"]["content"]) == {"text/javascript"}
