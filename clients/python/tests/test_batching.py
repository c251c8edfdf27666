"""Batching by size and interval, the shape of each item, gzip, and flush semantics."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta, timezone

from activity_client import Client
from tests.conftest import Refusals, make_client
from tests.fake_api import API_KEY, FakeApi

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_full_batches_go_at_once_and_the_rest_waits_for_the_interval_or_a_flush(api: FakeApi) -> None:
    with make_client(api, max_batch_size=100, flush_interval=30, concurrency=1) as client:
        ids = [client.track("u1", "page_view", {"i": i}) for i in range(250)]
        assert api.wait_stored(200)
        assert len(api.stored) == 200  # the last 50 wait for a 30 s interval
        assert [len(s.ids) for s in api.seen] == [100, 100]
        assert client.flush(10)
        assert set(api.stored) == set(ids)
        assert [len(s.ids) for s in api.seen] == [100, 100, 50]


def test_a_partial_batch_is_sent_after_the_interval_without_a_flush(api: FakeApi) -> None:
    with make_client(api, flush_interval=0.05) as client:
        ids = [client.track("u1", "login") for _ in range(3)]
        assert api.wait_stored(3)
        assert set(api.stored) == set(ids)


def test_each_item_carries_the_client_id_its_time_and_the_time_of_sending(api: FakeApi) -> None:
    with make_client(api) as client:
        given = datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
        first = client.track(
            "user-42", "page_view", {"path": "/pricing", "nested": {"n": 1}}, timestamp=given
        )
        naive = client.track("user-42", "login", timestamp=datetime(2026, 11, 26, 10, 0))
        now = client.track("user-42", "logout")
        assert client.flush(10)
    item = api.stored[first]
    assert item == {
        "id": first,
        "userId": "user-42",
        "action": "page_view",
        "metadata": {"path": "/pricing", "nested": {"n": 1}},
        "timestamp": "2026-11-26T10:00:00.123Z",
        "sentAt": item["sentAt"],
    }
    assert ISO_MS.match(item["sentAt"])
    assert api.stored[naive]["timestamp"] == "2026-11-26T10:00:00.000Z"
    assert api.stored[naive]["metadata"] == {}
    stamped = datetime.strptime(api.stored[now]["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs(stamped - datetime.now(UTC)) < timedelta(seconds=30)
    assert api.stored[now]["sentAt"] >= api.stored[now]["timestamp"]


def test_bodies_are_gzipped_unless_turned_off(api: FakeApi) -> None:
    with make_client(api) as client:
        client.track("u1", "login")
        assert client.flush(10)
    with make_client(api, gzip=False) as client:
        client.track("u1", "login")
        assert client.flush(10)
    assert [s.gzipped for s in api.seen] == [True, False]


def test_a_server_that_cannot_read_gzip_gets_the_same_events_uncompressed_from_then_on() -> None:
    api = FakeApi(accept_gzip=False).start()
    try:
        with make_client(api, max_batch_size=10, concurrency=1) as client:
            ids = [client.track("u1", "login") for _ in range(30)]
            assert client.flush(10)
            assert not client.stats.gzip
        assert set(api.stored) == set(ids)
        assert [(s.status, s.gzipped) for s in api.seen] == [(400, True)] + [(202, False)] * 3
        assert api.seen[0].ids == [] and api.seen[1].ids == ids[:10]
    finally:
        api.stop()


def test_batches_stay_under_max_batch_bytes(api: FakeApi) -> None:
    with make_client(api, max_batch_bytes=20_000, gzip=False) as client:
        for i in range(100):
            client.track("u1", "upload", {"blob": "x" * 1000, "i": i})
        assert client.flush(10)
    assert len(api.stored) == 100
    assert all(len(s.ids) <= 20 for s in api.seen) and len(api.seen) >= 5


def test_flush_returns_only_once_every_earlier_event_is_stored_or_refused(
    api: FakeApi, refusals: Refusals
) -> None:
    with make_client(api, on_error=refusals, flush_interval=30) as client:
        good = [client.track("u1", "login") for _ in range(120)]
        bad = client.track("u1", "invalid")
        assert client.flush(10)
        assert set(good) <= set(api.stored)
        assert [r.event_id for r in refusals] == [bad]


def test_flush_times_out_while_the_server_does_not_answer_then_succeeds(api: FakeApi) -> None:
    api.hold()
    with make_client(api) as client:
        ids = [client.track("u1", "login") for _ in range(10)]
        assert not client.flush(0.2)
        api.release()
        assert client.flush(10)
        assert set(ids) <= set(api.stored)


def test_track_is_thread_safe(api: FakeApi) -> None:
    client = make_client(api, max_queue_size=100_000)
    ids: list[list[str]] = [[] for _ in range(8)]

    def work(mine: list[str]) -> None:
        mine.extend(client.track(f"u{len(mine)}", "click") for _ in range(2_000))

    threads = [threading.Thread(target=work, args=(mine,)) for mine in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.close()
    tracked = [i for mine in ids for i in mine]
    assert len(set(tracked)) == 16_000
    assert set(api.stored) == set(tracked)
    assert client.stats.delivered == 16_000


def test_invalid_input_is_refused_by_track_itself(api: FakeApi) -> None:
    with Client(api.url, API_KEY) as client:
        for bad in [("", "a", None), ("u", "", None), ("u", "a", [1]), ("u", "a", {"x": float("nan")})]:
            try:
                client.track(*bad)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                continue
            raise AssertionError(f"{bad} was accepted")
        assert client.stats.tracked == 0
