"""Erasure over fakes: what is suppressed and removed, and how an erasure raced by a write runs again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from activity_service.application.erase_users import (
    ErasedUsers,
    ErasureNotFound,
    GetErasure,
    RequestErasure,
    RunErasures,
)
from activity_service.application.persist_activities import PersistActivities, RetryPolicy
from activity_service.application.replay_activities import ReplayActivities
from activity_service.domain.activity import Activity
from activity_service.domain.delivery import DeadLetter, ReadBatch, Received
from activity_service.domain.erasure import ErasureStatus
from tests.fakes import (
    FixedClock,
    InMemoryDeadLetterLog,
    InMemoryDeadLetterTopic,
    InMemoryErasureLog,
    InMemoryRepository,
    SequentialIds,
)

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
BEFORE, AFTER = NOW - timedelta(minutes=1), NOW + timedelta(minutes=1)


def event(
    event_id: str, user: str = "x", *, received_at: datetime = BEFORE, tenant: str = "acme"
) -> Activity:
    return Activity.record(id=event_id, user_id=user, action="a", received_at=received_at, tenant=tenant)


class World:
    def __init__(self) -> None:
        self.clock = FixedClock(NOW)
        self.repository = InMemoryRepository()
        self.letters = InMemoryDeadLetterLog()
        self.erasures = InMemoryErasureLog()
        self.request = RequestErasure(self.erasures, SequentialIds(), self.clock)
        self.run = RunErasures(self.repository, self.letters, self.erasures, self.clock)
        self.persist = PersistActivities(
            self.repository,
            InMemoryDeadLetterTopic(),
            self.letters,
            erased=ErasedUsers(self.erasures),
            retry=RetryPolicy(0.0, 0.0),
            clock=self.clock,
        )

    async def consume(self, *activities: Activity) -> int:
        batch = [Received("t", 0, i, None, b"", a) for i, a in enumerate(activities)]
        settled = await self.persist.execute(batch, asyncio.Event())
        assert settled is not None
        return settled.suppressed


async def test_an_erasure_removes_the_users_events_received_before_it_and_keeps_the_rest() -> None:
    w = World()
    await w.repository.add_many(
        [
            event("old"),
            event("other-user", "y"),
            event("other-tenant", tenant="globex"),
            event("new", received_at=AFTER),
        ]
    )
    await w.letters.add(DeadLetter("t:0:9", "dead", "RejectedByStore", "r", BEFORE, "acme", "x"))
    erasure = await w.request.execute("acme", "x")
    assert erasure.status is ErasureStatus.PENDING and erasure.requested_at == NOW

    assert await w.run.execute() == 1
    assert w.repository.ids() == ["new", "other-tenant", "other-user"]
    assert w.letters.letters == {}
    done = await GetErasure(w.erasures).execute("acme", erasure.id)
    assert (done.status, done.removed, done.finished_at) == (ErasureStatus.DONE, 1, NOW)
    assert await w.run.execute() == 0  # nothing left to do


async def test_covered_events_arriving_later_are_suppressed_and_later_ones_stored() -> None:
    w = World()
    await w.request.execute("acme", "x")
    suppressed = await w.consume(event("backlog"), event("fresh", received_at=AFTER), event("mine", "y"))
    assert suppressed == 1
    assert w.repository.ids() == ["fresh", "mine"]


async def test_a_write_that_raced_the_request_makes_the_erasure_run_again() -> None:
    w = World()
    erasure = await w.request.execute("acme", "x")
    claimed = await w.erasures.claim(NOW, timedelta(minutes=5))
    assert claimed is not None and claimed.id == erasure.id
    # A writer that asked before the erasure existed, stored after the pass had begun:
    await w.repository.add_many([event("raced")])
    await ErasedUsers(w.erasures).after_storing([event("raced")])
    assert not await w.erasures.record_pass(
        claimed, await w.repository.erase(claimed), NOW
    )  # raced: not done
    assert w.repository.ids() == []
    # Even when it had finished already, a raced erasure goes again:
    assert await w.run.execute() == 1
    await w.repository.add_many([event("raced-late")])
    await ErasedUsers(w.erasures).after_storing([event("raced-late")])
    assert (await GetErasure(w.erasures).execute("acme", erasure.id)).status is ErasureStatus.RUNNING
    assert await w.run.execute() == 1
    assert w.repository.ids() == []
    assert (await GetErasure(w.erasures).execute("acme", erasure.id)).status is ErasureStatus.DONE


async def test_another_tenants_erasure_is_as_absent_as_an_unknown_one() -> None:
    w = World()
    erasure = await w.request.execute("acme", "x")
    for tenant, erasure_id in (("globex", erasure.id), ("acme", "nope")):
        with pytest.raises(ErasureNotFound):
            await GetErasure(w.erasures).execute(tenant, erasure_id)


async def test_a_replay_and_a_dead_letter_replay_bring_nothing_erased_back() -> None:
    w = World()
    await w.letters.add(DeadLetter("dlq:0:1", "dead", "RejectedByStore", "r", AFTER, "acme", "x"))
    await w.request.execute("acme", "x")

    async def read() -> AsyncIterator[ReadBatch]:
        yield ReadBatch((event("dead"), event("kept", received_at=AFTER), event("y1", "y")))

    replay = ReplayActivities(w.repository, w.letters, ErasedUsers(w.erasures))
    report = await replay.execute(read(), forget_dead_letters=True)
    assert (report.inserted, report.erased) == (2, 1)
    assert w.repository.ids() == ["kept", "y1"]
    assert w.letters.letters == {}  # the erased event's record goes too
