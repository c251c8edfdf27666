"""Retries keep the ids and honour Retry-After; 413 splits; rejected items and 401 are reported."""

from __future__ import annotations

import socket

from activity_client import Client
from tests.conftest import FAST, Refusals, make_client, wait_until
from tests.fake_api import API_KEY, FakeApi


def test_a_503_is_resent_after_retry_after_with_the_same_ids_and_a_new_sent_at(api: FakeApi) -> None:
    api.fail_next(1, 503, retry_after="1")
    with make_client(api, concurrency=1) as client:
        ids = [client.track("u1", "login") for _ in range(5)]
        assert client.flush(10)
        assert client.stats.retries == 1
    first, second = api.seen
    assert (first.status, second.status) == (503, 202)
    assert first.ids == second.ids == ids
    assert second.at - first.at >= 0.99  # Retry-After: 1, counted from before the 503 was even sent
    assert second.sent_at[0] >= first.sent_at[0]
    assert set(api.stored) == set(ids)


def test_a_429_pauses_every_sender_for_retry_after(api: FakeApi) -> None:
    api.fail_next(1, 429, retry_after="1")
    with make_client(api, concurrency=4, max_batch_size=10, flush_interval=30) as client:
        ids = [client.track("u1", "login") for _ in range(10)]
        assert wait_until(lambda: client.stats.retries == 1)  # the client has read the 429
        more = [client.track("u1", "login") for _ in range(30)]
        assert client.flush(10)
    refused_at = api.seen[0].at
    assert api.seen[0].status == 429
    assert all(s.at - refused_at >= 0.99 for s in api.seen[1:])  # no sender went before Retry-After
    assert set(api.stored) == set(ids + more)


def test_many_failures_back_off_and_the_events_get_through_stored_once(api: FakeApi) -> None:
    api.fail_next(3, 503)
    api.fail_next(2, 502)
    api.fail_next(1, 500)
    with make_client(api, concurrency=1) as client:
        ids = [client.track("u1", "login") for _ in range(50)]
        assert client.flush(10)
        assert client.stats.retries == 6
    assert [s.status for s in api.seen] == [503, 503, 503, 502, 502, 500, 202]
    assert all(s.ids == ids for s in api.seen)
    assert set(api.stored) == set(ids)


def test_a_request_that_times_out_is_resent_and_the_server_keeps_one_copy(api: FakeApi) -> None:
    api.slow_next(1, delay=1.0)  # answered 202 (and stored) after the client gave up on it
    with make_client(api, timeout=0.3, concurrency=1) as client:
        ids = [client.track("u1", "login") for _ in range(5)]
        assert client.flush(10)
        assert client.stats.retries >= 1
    assert api.wait_requests(2)  # the slow answer is recorded once it is sent
    assert all(api.received[i] >= 2 for i in ids)
    assert set(api.stored) == set(ids)


def test_events_tracked_while_the_api_is_down_are_delivered_when_it_comes_back() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = Client(f"http://127.0.0.1:{port}", API_KEY, **FAST)
    ids = [client.track("u1", "login") for _ in range(20)]
    assert not client.flush(0.3)  # connection refused, again and again
    assert client.stats.retries >= 1
    api = FakeApi(port=port).start()
    try:
        assert client.flush(10)
        client.close()
        assert set(api.stored) == set(ids)
    finally:
        api.stop()


def test_413_splits_the_batch_and_refuses_only_an_event_too_large_alone(refusals: Refusals) -> None:
    api = FakeApi(max_items=30, max_body_bytes=50_000).start()
    try:
        with make_client(api, on_error=refusals, max_batch_size=100, concurrency=1) as client:
            small = [client.track("u1", "login") for _ in range(60)]
            huge = client.track("u1", "upload", {"blob": "x" * 60_000})
            assert client.flush(10)
            assert client.stats.refused == 1
        assert set(api.stored) == set(small)
        assert [(r.event_id, r.reason, r.status) for r in refusals] == [(huge, "too_large", 413)]
        assert all(s.status == 413 for s in api.seen if len(s.ids) > 30)
    finally:
        api.stop()


def test_rejected_items_are_reported_with_the_servers_reasons_and_the_rest_stored(
    api: FakeApi, refusals: Refusals
) -> None:
    with make_client(api, on_error=refusals) as client:
        good = client.track("u1", "login")
        bad = client.track("u1", "invalid")
        assert client.flush(10)
        assert client.stats.delivered == 1 and client.stats.refused == 1
    assert list(api.stored) == [good]
    (refusal,) = refusals
    assert (refusal.event_id, refusal.reason, refusal.status) == (bad, "rejected", 202)
    assert refusal.errors[0].field == "action"
    assert len(api.seen) == 1  # never resent


def test_a_batch_with_no_valid_item_is_a_400_whose_items_are_reported_not_resent(
    api: FakeApi, refusals: Refusals
) -> None:
    with make_client(api, on_error=refusals) as client:
        bad = [client.track("u1", "invalid") for _ in range(3)]
        assert client.flush(10)
    assert [s.status for s in api.seen] == [400]
    assert [(r.event_id, r.reason, r.status) for r in refusals] == [(b, "rejected", 400) for b in bad]


def test_a_refused_key_is_retried_for_auth_retry_time_then_reported(refusals: Refusals) -> None:
    api = FakeApi(api_key="another-key-entirely").start()
    try:
        with make_client(api, on_error=refusals, auth_retry_time=0.3, concurrency=1) as client:
            ids = [client.track("u1", "login") for _ in range(3)]
            assert client.flush(10)
            assert client.stats.refused == 3
        assert [(r.event_id, r.reason, r.status) for r in refusals] == [(i, "unauthorized", 401) for i in ids]
        statuses = [s.status for s in api.seen]
        assert len(statuses) >= 2 and set(statuses) == {401}
        assert api.seen[-1].at - api.seen[0].at >= 0.3 - 0.05  # kept trying until auth_retry_time
    finally:
        api.stop()


def test_a_wrong_base_path_is_refused_as_a_client_error_at_once(api: FakeApi, refusals: Refusals) -> None:
    with Client(api.url + "/not-here", API_KEY, on_error=refusals, **FAST) as client:
        event = client.track("u1", "login")
        assert client.flush(10)
    assert [(r.event_id, r.reason, r.status) for r in refusals] == [(event, "client_error", 404)]


def test_an_on_error_that_raises_does_not_stop_delivery(api: FakeApi) -> None:
    def explode(_: object) -> None:
        raise RuntimeError("boom")

    with make_client(api, on_error=explode, concurrency=1) as client:
        client.track("u1", "invalid")
        good = client.track("u1", "login")
        assert client.flush(10)
        later = client.track("u1", "login")
        assert client.flush(10)
    assert set(api.stored) == {good, later}
