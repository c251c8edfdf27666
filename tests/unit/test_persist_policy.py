"""The consumer's policy (PersistActivities) over fakes: what is stored, dead-lettered, retried, and when
a batch counts as settled, so that it may be committed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from activity_service.application.erase_users import ErasedUsers
from activity_service.application.persist_activities import PersistActivities, RetryPolicy
from activity_service.domain.activity import Activity
from activity_service.domain.delivery import Received, Settled
from activity_service.domain.ports import PersistObserver, StoreOutcome
from tests.fakes import (
    FixedClock,
    InMemoryDeadLetterLog,
    InMemoryDeadLetterTopic,
    InMemoryErasureLog,
    InMemoryRepository,
)

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
NO_WAIT = RetryPolicy(initial_seconds=0.0, max_seconds=0.0)


def readable(offset: int, event_id: str | None = None) -> Received:
    activity = Activity.record(id=event_id or f"e{offset}", user_id="u", action="a", received_at=NOW)
    return Received("t", 0, offset, b"u", b"{...}", activity)


def unreadable(offset: int) -> Received:
    return Received("t", 0, offset, None, b"garbage", None, "UndecodableMessage", "not JSON", None)


class Observed(PersistObserver):
    def __init__(self) -> None:
        self.inserted = 0
        self.dead: list[str] = []
        self.retries: list[str] = []

    def stored(self, outcome: StoreOutcome, seconds: float) -> None:
        self.inserted += outcome.inserted

    def dead_lettered(self, error_type: str) -> None:
        self.dead.append(error_type)

    def retried(self, operation: str) -> None:
        self.retries.append(operation)

    def suppressed(self, count: int) -> None:
        self.suppressed_events = getattr(self, "suppressed_events", 0) + count


class Persisting:
    def __init__(self) -> None:
        self.repository = InMemoryRepository()
        self.topic = InMemoryDeadLetterTopic()
        self.letters = InMemoryDeadLetterLog()
        self.observed = Observed()
        self.erasures = InMemoryErasureLog()
        self.use_case = PersistActivities(
            self.repository,
            self.topic,
            self.letters,
            erased=ErasedUsers(self.erasures),
            retry=NO_WAIT,
            clock=FixedClock(NOW),
            observer=self.observed,
        )

    async def settle(self, batch: list[Received], stop: asyncio.Event | None = None) -> Settled | None:
        return await self.use_case.execute(batch, stop or asyncio.Event())


async def test_a_batch_is_settled_once_every_event_is_stored_or_already_stored() -> None:
    p = Persisting()
    first = await p.settle([readable(0), readable(1)])
    again = await p.settle([readable(0), readable(1), readable(2)])
    assert first == Settled(records=2, inserted=2, duplicates=0, dead_lettered=0)
    assert again == Settled(records=3, inserted=1, duplicates=2, dead_lettered=0)
    assert p.repository.ids() == ["e0", "e1", "e2"]
    assert p.topic.sent == []


async def test_what_cannot_be_read_or_is_refused_for_good_is_dead_lettered_and_recorded() -> None:
    p = Persisting()
    p.repository.refuse.add("e2")
    settled = await p.settle([readable(0), unreadable(1), readable(2)])
    assert settled == Settled(records=3, inserted=1, duplicates=0, dead_lettered=2)
    assert [(m.offset, kind) for m, kind, _ in p.topic.sent] == [
        (1, "UndecodableMessage"),
        (2, "RejectedByStore"),
    ]
    assert {source: letter.event_id for source, letter in p.letters.letters.items()} == {
        "t:0:1": None,
        "t:0:2": "e2",
    }
    assert all(letter.at == NOW for letter in p.letters.letters.values())
    assert p.observed.dead == ["UndecodableMessage", "RejectedByStore"] and p.observed.inserted == 1


async def test_a_write_whose_outcome_is_unknown_is_retried_until_it_is_known() -> None:
    p = Persisting()
    p.repository.failures = 3
    settled = await p.settle([readable(0)])
    assert settled is not None and settled.inserted == 1
    assert p.observed.retries == ["store"] * 3


async def test_a_dead_letter_that_cannot_be_sent_is_retried_not_skipped() -> None:
    p = Persisting()
    p.topic.failures = 2
    settled = await p.settle([unreadable(0)])
    assert settled is not None and settled.dead_lettered == 1
    assert p.observed.retries == ["dead_letter"] * 2
    assert len(p.topic.sent) == 1


async def test_stopping_while_the_store_still_fails_settles_nothing() -> None:
    p = Persisting()
    p.repository.failures = 1_000_000
    stop = asyncio.Event()
    stop.set()
    assert await p.settle([readable(0), unreadable(1)], stop) is None
    assert p.repository.documents == {} and p.topic.sent == []


async def test_retries_back_off_exponentially_with_jitter_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_seconds=0.5, max_seconds=4.0)
    for attempt in range(8):
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= min(4.0, 0.5 * 2**attempt) for d in delays)
    assert max(policy.delay(10) for _ in range(200)) > 2.0  # jitter spreads over the whole window


async def test_an_empty_batch_is_settled_at_once() -> None:
    assert await Persisting().settle([]) == Settled(records=0, inserted=0, duplicates=0, dead_lettered=0)


def test_a_received_message_names_its_source() -> None:
    assert unreadable(7).source == "t:0:7"
