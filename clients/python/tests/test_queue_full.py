"""A full queue blocks (up to block_timeout), raises or drops, as chosen, and counts it."""

from __future__ import annotations

import threading

import pytest

from activity_client import Client, QueueFull
from tests.conftest import make_client, wait_until
from tests.fake_api import FakeApi


def _filled(api: FakeApi, **options: object) -> tuple[Client, list[str]]:
    """A client whose queue (100 events) is full: its one batch is held unanswered by the server."""
    api.hold()
    client = make_client(api, max_queue_size=100, max_batch_size=100, concurrency=1, **options)
    ids = [client.track("u1", "login") for _ in range(100)]
    assert wait_until(lambda: client.stats.in_flight == 100)
    return client, ids


def test_raise_refuses_at_once_and_counts_it(api: FakeApi) -> None:
    client, ids = _filled(api, on_full="raise")
    with pytest.raises(QueueFull):
        client.track("u1", "login")
    assert client.stats.full == 1
    api.release()
    client.close()
    assert set(api.stored) == set(ids)


def test_drop_returns_an_id_that_is_never_sent_and_counts_and_logs_it(
    api: FakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    client, ids = _filled(api, on_full="drop")
    dropped = client.track("u1", "login")
    assert client.stats.dropped == 1
    for _ in range(4):
        client.track("u1", "login")
    # Logged at the 1st, 2nd and 4th drop: never silent, never a line per event.
    assert [r.getMessage().split(": ")[1] for r in caplog.records if "dropped" in r.getMessage()] == [
        '1 event(s) dropped so far (on_full="drop")',
        '2 event(s) dropped so far (on_full="drop")',
        '4 event(s) dropped so far (on_full="drop")',
    ]
    api.release()
    assert client.flush(10)
    client.close()
    assert set(api.stored) == set(ids) and dropped not in api.stored


def test_block_gives_up_after_block_timeout(api: FakeApi) -> None:
    client, _ = _filled(api, on_full="block", block_timeout=0.2)
    with pytest.raises(QueueFull):
        client.track("u1", "login")
    assert client.stats.full == 1
    api.release()
    client.close()


def test_block_waits_for_room_and_then_queues(api: FakeApi) -> None:
    client, ids = _filled(api, on_full="block", block_timeout=30)
    late: list[str] = []
    blocked = threading.Thread(target=lambda: late.append(client.track("u1", "login")))
    blocked.start()
    blocked.join(0.2)
    assert blocked.is_alive() and not late  # still waiting: nothing has left the queue
    api.release()
    blocked.join(20)
    assert late
    client.close()
    assert set(api.stored) == set(ids + late)
