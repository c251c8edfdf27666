"""Tenants, resends, erasure requests and personal data in-process: what the API answers each key."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.http.conftest import ERASE, READ, READ_PII, WRITE, Fakes, bearer, serve, settings, started
from tests.http.sse import stream

ACME, GLOBEX = "acme-key-0123456789abcdef", "globex-key-0123456789abcdef"
ACME_ERASER, GLOBEX_ERASER = "acme-eraser-0123456789abcdef", "globex-eraser-0123456789abcd"
ACME_PII = "acme-pii-reader-0123456789ab"
TENANT_KEYS = [
    {"name": "acme-app", "key": ACME, "scopes": [WRITE, READ], "tenant": "acme"},
    {"name": "globex-app", "key": GLOBEX, "scopes": [WRITE, READ], "tenant": "globex"},
    {"name": "acme-privacy", "key": ACME_ERASER, "scopes": [ERASE], "tenant": "acme"},
    {"name": "globex-privacy", "key": GLOBEX_ERASER, "scopes": [ERASE], "tenant": "globex"},
    {"name": "acme-support", "key": ACME_PII, "scopes": [READ, READ_PII], "tenant": "acme"},
]
SAME = {"id": "order-123", "userId": "user-1", "action": "purchase", "metadata": {"total": 10}}


async def stored(fakes: Fakes) -> None:
    """What the consumer would do: store what was published."""
    await fakes.repository.add_many(fakes.publisher.published)


async def as_key(http: httpx.AsyncClient, key: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return await http.request(method, path, headers=bearer(key), **kwargs)


async def test_two_tenants_with_the_same_id_and_user_each_see_only_their_own(fakes: Fakes) -> None:
    async with serve(fakes, settings(keys=TENANT_KEYS), key=None) as http:
        for key in (ACME, GLOBEX):
            assert (await as_key(http, key, "POST", "/api/activities", json=SAME)).status_code == 202
        await stored(fakes)
        assert len(fakes.repository.documents) == 2
        for key, tenant, source in ((ACME, "acme", "acme-app"), (GLOBEX, "globex", "globex-app")):
            [only] = (await as_key(http, key, "GET", "/api/activities")).json()["data"]
            assert (only["id"], only["source"]) == ("order-123", source)
            got = await as_key(http, key, "GET", "/api/activities/order-123")
            assert got.json()["source"] == source
            stats = await as_key(
                http,
                key,
                "GET",
                "/api/activities/stats",
                params={"interval": "day", "startDate": "2026-11-26", "endDate": "2026-11-26"},
            )
            assert stats.json()["buckets"][0]["total"] == 1, tenant
        # Another tenant's id reads as an unknown one.
        await as_key(http, ACME, "POST", "/api/activities", json={**SAME, "id": "acme-only"})
        await stored(fakes)
        assert (await as_key(http, GLOBEX, "GET", "/api/activities/acme-only")).status_code == 404
        status = await as_key(http, GLOBEX, "GET", "/api/activities/acme-only/status")
        assert status.json()["status"] == "unknown"


async def test_the_live_tail_shows_each_tenant_its_own_events(fakes: Fakes) -> None:
    config = settings(keys=TENANT_KEYS)
    async with started(fakes, config) as app, serve(fakes, config, key=None) as http:
        async with stream(app, "/api/activities/stream", key=GLOBEX) as live:
            await live.events(1)
            await as_key(http, ACME, "POST", "/api/activities", json={**SAME, "id": "acme-only"})
            await as_key(http, GLOBEX, "POST", "/api/activities", json={**SAME, "id": "globex-only"})
            [event] = await live.events(1)
    assert json.loads(event["data"])["id"] == "globex-only"


async def test_the_live_tail_never_shows_what_an_erasure_covers_even_from_an_old_cursor(fakes: Fakes) -> None:
    config = settings(keys=TENANT_KEYS)
    async with started(fakes, config) as app, serve(fakes, config, key=None) as http:
        async with stream(app, "/api/activities/stream", key=ACME) as live:
            [ready] = await live.events(1)
            for user in ("victim", "bystander", "victim"):
                await as_key(http, ACME, "POST", "/api/activities", json={"userId": user, "action": "pay"})
            assert len(await live.events(3)) == 3  # shown live, before any erasure
        fakes.clock.advance(1)
        assert (await as_key(http, ACME_ERASER, "DELETE", "/api/users/victim/activities")).status_code == 202
        fakes.clock.advance(1)
        await as_key(http, ACME, "POST", "/api/activities", json={"userId": "victim", "action": "back"})
        resumed = {"Last-Event-ID": ready["id"]}  # from before the erasure: the log still holds them all
        async with stream(app, "/api/activities/stream", headers=resumed, key=ACME) as again:
            shown = [json.loads(e["data"]) for e in (await again.events(3, within=1))[1:]]
    # The bystander, and the victim's event received after the erasure; none of those it covers.
    assert [(e["userId"], e["action"]) for e in shown] == [("bystander", "pay"), ("victim", "back")]


async def test_an_erased_users_ids_are_free_again_and_a_409_never_tells_what_they_said(fakes: Fakes) -> None:
    async with serve(fakes, settings(keys=TENANT_KEYS), key=None) as http:
        secret = {"id": "order-1", "userId": "x", "action": "pay", "metadata": {"card": "4111"}}
        guess = {**secret, "metadata": {"card": "5500"}}
        assert (await as_key(http, ACME, "POST", "/api/activities", json=secret)).status_code == 202
        assert (await as_key(http, ACME, "POST", "/api/activities", json=guess)).status_code == 409
        fakes.clock.advance(1)
        assert (await as_key(http, ACME_ERASER, "DELETE", "/api/users/x/activities")).status_code == 202
        fakes.clock.advance(1)
        # A wrong guess and the right one answer alike: the erased content is not remembered.
        assert (await as_key(http, ACME, "POST", "/api/activities", json=guess)).status_code == 202
        assert (await as_key(http, ACME, "POST", "/api/activities", json=secret)).status_code == 409


async def test_a_resend_with_other_content_is_a_409_and_never_a_silent_202(fakes: Fakes) -> None:
    async with serve(fakes, settings(keys=TENANT_KEYS), key=ACME) as http:
        assert (await http.post("/api/activities", json=SAME)).status_code == 202
        assert (await http.post("/api/activities", json=SAME)).status_code == 202  # the same event again
        changed = {**SAME, "metadata": {"total": 99}}
        refused = await http.post("/api/activities", json=changed)
        assert refused.status_code == 409
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["errors"][0]["field"] == "id"
        keyed = await http.post(
            "/api/activities", json={**changed, "id": None}, headers={"Idempotency-Key": "order-123"}
        )
        assert keyed.status_code == 409  # the Idempotency-Key names the same event
        batch = await http.post(
            "/api/activities/batch", json={"activities": [changed, {**SAME, "id": "new"}]}
        )
        assert batch.status_code == 202
        results = batch.json()["results"]
        assert results[0]["status"] == "rejected" and results[0]["errors"][0]["field"] == "id"
        assert results[1]["status"] == "accepted"
        one_batch = [{**SAME, "id": "b1"}, {**SAME, "id": "b1", "action": "refund"}, {**SAME, "id": "b1"}]
        within = (await http.post("/api/activities/batch", json={"activities": one_batch})).json()
        assert [r["status"] for r in within["results"]] == ["accepted", "rejected", "accepted"]
    assert [a.metadata["total"] for a in fakes.publisher.published] == [10, 10, 10, 10, 10]


async def test_an_erasure_is_accepted_for_any_user_and_followed_by_its_own_tenant_only(fakes: Fakes) -> None:
    async with serve(fakes, settings(keys=TENANT_KEYS), key=None) as http:
        requested = await as_key(http, ACME_ERASER, "DELETE", "/api/users/nobody-we-know/activities")
        assert requested.status_code == 202
        body = requested.json()
        assert (
            body["status"] == "pending"
            and requested.headers["location"] == f"/api/erasures/{body['erasureId']}"
        )
        followed = await as_key(http, ACME_ERASER, "GET", requested.headers["location"])
        assert followed.status_code == 200
        assert followed.json() | {"requestedAt": None} == {
            "erasureId": body["erasureId"],
            "userId": "nobody-we-know",
            "status": "pending",
            "removed": 0,
            "requestedAt": None,
            "finishedAt": None,
        }
        assert (await as_key(http, GLOBEX_ERASER, "GET", requested.headers["location"])).status_code == 404
        assert (await as_key(http, ACME_ERASER, "GET", "/api/erasures/no-such-erasure")).status_code == 404
        assert (await as_key(http, ACME_ERASER, "GET", "/api/erasures/..%2f..")).status_code in (400, 404)
        assert (await as_key(http, ACME, "DELETE", "/api/users/u/activities")).status_code == 403
        too_long = await as_key(http, ACME_ERASER, "DELETE", f"/api/users/{'u' * 5000}/activities")
        assert too_long.status_code == 400
        slashed = await as_key(http, ACME_ERASER, "DELETE", "/api/users/team%2Fann/activities")
        assert slashed.status_code == 202, slashed.text  # a userId may hold "/": it can be erased too
        nul = await as_key(http, ACME_ERASER, "DELETE", "/api/users/a%00b/activities")
        assert nul.status_code == 400 and nul.headers["content-type"] == "application/problem+json"
        # A line feed: the route matches it (it was a bare 404), like any user no event can have.
        lf = await as_key(http, ACME_ERASER, "DELETE", "/api/users/a%0Ab/activities")
        assert lf.status_code == 202, lf.text
    assert sorted((e.tenant, e.user_id) for e in fakes.erasures.erasures.values()) == [
        ("acme", "a\nb"),
        ("acme", "nobody-we-know"),
        ("acme", "team/ann"),
    ]


async def test_ip_address_mode_truncates_or_drops_the_address_before_publishing(fakes: Fakes) -> None:
    for mode, peer, kept in (
        ("truncated", ("203.0.113.77", 1), "203.0.113.0"),
        ("truncated", ("2001:db8:abcd:12::9", 1), "2001:db8:abcd::"),
        ("none", ("203.0.113.77", 1), None),
    ):
        fakes.publisher.published.clear()
        async with serve(fakes, settings(ip_address_mode=mode), peer=peer) as http:
            await http.post("/api/activities", json={"userId": "u", "action": "a"})
            await http.post("/api/activities/batch", json={"activities": [{"userId": "u", "action": "a"}]})
        assert [a.ip_address for a in fakes.publisher.published] == [kept, kept], mode


async def test_with_pii_read_scope_required_only_read_pii_keys_see_addresses(fakes: Fakes) -> None:
    config = settings(keys=TENANT_KEYS, pii_read_scope_required=True)
    async with started(fakes, config) as app, serve(fakes, config, key=None) as http:
        async with (
            stream(app, "/api/activities/stream", key=ACME) as plain,
            stream(app, "/api/activities/stream", key=ACME_PII) as trusted,
        ):
            await plain.events(1), await trusted.events(1)
            await as_key(http, ACME, "POST", "/api/activities", json=SAME)
            [without], [with_pii] = await plain.events(1), await trusted.events(1)
        await stored(fakes)
        for key, shown in ((ACME, None), (ACME_PII, "127.0.0.1")):
            [listed] = (await as_key(http, key, "GET", "/api/activities")).json()["data"]
            got = (await as_key(http, key, "GET", "/api/activities/order-123")).json()
            assert listed["ipAddress"] == got["ipAddress"] == shown, key
    assert json.loads(without["data"])["ipAddress"] is None
    assert json.loads(with_pii["data"])["ipAddress"] == "127.0.0.1"
