"""A client created before os.fork() works in the child, which sends only its own events."""

from __future__ import annotations

import os
from pathlib import Path

from activity_client._ids import UuidV7
from tests.conftest import make_client
from tests.fake_api import FakeApi


def _in_child(work: object) -> int:
    """Forks; the child runs ``work`` and exits with its result (0 = success); returns the exit code."""
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            code = work()  # type: ignore[operator]
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_the_child_sends_its_own_events_and_not_those_the_parent_still_has_queued(api: FakeApi) -> None:
    client = make_client(api, flush_interval=30)  # the parent's events wait in its queue during the fork
    before = client.track("parent", "signup")
    assert client.flush(10)  # so the parent has a connection open when it forks
    parent = {client.track("parent", "login") for _ in range(20)} | {before}

    def child() -> int:  # the server runs in the parent: the child can only see what its client says
        for _ in range(30):
            client.track("child", "login")
        ok = client.flush(10) and client.stats.delivered == 30 and client.stats.tracked == 30
        client.close()
        return 0 if ok else 3

    assert _in_child(child) == 0
    assert client.stats.queued == 20
    assert client.flush(10)  # over the connection it had before the fork, which the child left alone
    client.close()
    stored = api.stored
    assert parent <= set(stored)
    assert {i for i, item in stored.items() if item["userId"] == "child"} == set(stored) - parent
    assert len(stored) == 51
    assert all(n == 1 for n in api.received.values())  # nothing was sent by both


def test_with_a_spool_parent_and_child_keep_separate_journals(api: FakeApi, tmp_path: Path) -> None:
    client = make_client(api, flush_interval=30, spool_dir=tmp_path)
    parent = {client.track("parent", "login") for _ in range(20)}

    def child() -> int:
        for _ in range(30):
            client.track("child", "login")
        ok = client.flush(10)
        client.close()
        # The parent is alive: its journal must still be locked, so a new client adopts nothing.
        other = make_client(api, spool_dir=tmp_path)
        adopted = other.stats.adopted
        other.close()
        return 0 if ok and adopted == 0 else 4

    assert _in_child(child) == 0
    assert client.flush(10)
    client.close()
    assert parent <= set(api.stored) and len(api.stored) == 50
    assert all(n == 1 for n in api.received.values())
    assert list(tmp_path.iterdir()) == []


def test_ids_made_in_parent_and_child_at_the_same_moment_differ() -> None:
    ids = UuidV7()
    ids()  # the generator state the child would otherwise share
    read, write = os.pipe()

    def child() -> int:
        os.write(write, "".join(ids() for _ in range(100)).encode())
        return 0

    assert _in_child(child) == 0
    theirs = os.read(read, 1 << 16).decode()
    child_ids = {theirs[i : i + 36] for i in range(0, len(theirs), 36)}
    mine = {ids() for _ in range(100)}
    assert len(child_ids) == 100 and not child_ids & mine
