"""Followers that share the feed's position are handed the same batch object; FollowActivities checks it
against the erasures once for all of them, and again when this process noted an erasure in between."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection
from datetime import UTC, datetime, timedelta

from activity_service.application.erase_users import LiveErasures
from activity_service.application.follow_activities import FollowActivities
from activity_service.domain.activity import Activity
from activity_service.domain.erasure import Erasure, UserKey
from activity_service.domain.errors import StoreUnavailable
from activity_service.domain.feed import Cursor, FeedBatch, FeedEntry, FeedFilter
from tests.fakes import FixedClock, InMemoryErasureLog

RECEIVED = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


class SharedFeed:
    """Every follower gets the same batch object after its start, as the Kafka tail hands caught-up ones."""

    def __init__(self, batch: FeedBatch) -> None:
        self.batch = batch

    async def follow(self, matching: FeedFilter, resume_from: Cursor | None) -> AsyncIterator[FeedBatch]:
        yield FeedBatch((), {})
        yield self.batch


def _entry(user: str, n: int) -> FeedEntry:
    activity = Activity.record(id=f"e{n}", user_id=user, action="view", received_at=RECEIVED)
    return FeedEntry(activity, {0: n + 1}, n)


async def _second(follow: FollowActivities) -> list[str]:
    batches = aiter(follow.execute(FeedFilter()))
    await anext(batches)
    got = [entry.activity.user_id for entry in (await anext(batches)).entries]
    await batches.aclose()  # type: ignore[attr-defined]
    return got


async def test_an_erasure_noted_between_two_followers_of_one_batch_reaches_the_second() -> None:
    clock = FixedClock()
    live = LiveErasures(InMemoryErasureLog(), clock)
    follow = FollowActivities(SharedFeed(FeedBatch([_entry("u1", 0), _entry("u2", 1)], {0: 2})), live)
    assert await _second(follow) == ["u1", "u2"]
    assert await _second(follow) == ["u1", "u2"]  # the shared answer
    live.note(Erasure(id="x1", tenant="default", user_id="u1", requested_at=RECEIVED + timedelta(hours=1)))
    assert await _second(follow) == ["u2"], "the erasure noted since must not be missed by a reused answer"


class SlowErasureLog(InMemoryErasureLog):
    """Holds every lookup until released, counting them: followers woken together reach the batch while
    the first one's lookup is still out."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0
        self.release = asyncio.Event()

    async def erased_before(self, users: Collection[UserKey]) -> dict[UserKey, datetime]:
        self.lookups += 1
        await self.release.wait()
        return await super().erased_before(users)


async def test_followers_reaching_a_batch_while_it_is_checked_wait_for_that_one_check() -> None:
    erasures = SlowErasureLog()
    await erasures.add(
        Erasure(id="x1", tenant="default", user_id="u1", requested_at=RECEIVED + timedelta(hours=1))
    )
    follow = FollowActivities(
        SharedFeed(FeedBatch([_entry("u1", 0), _entry("u2", 1)], {0: 2})),
        LiveErasures(erasures, FixedClock()),
    )
    leaving = asyncio.create_task(_second(follow))
    followers = [asyncio.create_task(_second(follow)) for _ in range(3)]
    await asyncio.sleep(0.01)
    leaving.cancel()  # a follower that leaves mid-check must not cancel it for the others
    await asyncio.sleep(0.01)
    erasures.release.set()
    assert [await f for f in followers] == [["u2"]] * 3
    assert erasures.lookups == 1, "every follower woken by one hand-over asked the erasure log itself"


def _batch() -> FeedBatch:
    return FeedBatch([_entry("u1", 0), _entry("u2", 1)], {0: 2})


async def test_a_shared_check_cancelled_under_its_followers_is_made_again_for_them() -> None:
    erasures = SlowErasureLog()
    follow = FollowActivities(SharedFeed(_batch()), LiveErasures(erasures, FixedClock()))
    followers = [asyncio.create_task(_second(follow)) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert follow._last is not None
    follow._last[2].cancel()  # as a driver or a teardown would: no follower left
    await asyncio.sleep(0.01)
    erasures.release.set()
    assert [await f for f in followers] == [["u1", "u2"]] * 3, "the followers' streams ended with the check"
    assert erasures.lookups == 2


class FailingOnceErasureLog(InMemoryErasureLog):
    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    async def erased_before(self, users: Collection[UserKey]) -> dict[UserKey, datetime]:
        self.lookups += 1
        if self.lookups == 1:
            raise StoreUnavailable("the database did not answer")
        return await super().erased_before(users)


async def test_a_failed_check_ends_only_its_follower_not_the_next_one_to_reach_the_batch() -> None:
    erasures = FailingOnceErasureLog()
    follow = FollowActivities(SharedFeed(_batch()), LiveErasures(erasures, FixedClock()))
    ended = aiter(follow.execute(FeedFilter()))
    await anext(ended)
    assert [b async for b in ended] == [], "a follower past its first batch ends when the store cannot say"
    assert await _second(follow) == ["u1", "u2"], "the failed check was reused for a later follower"
    assert erasures.lookups == 2


async def test_an_erasure_noted_while_a_lookup_is_out_outlives_the_lookups_older_answer() -> None:
    erasures = SlowErasureLog()  # holds no erasure: its answer, once released, predates the one noted
    live = LiveErasures(erasures, FixedClock())
    lookup = asyncio.create_task(live.latest({("default", "u1")}))
    await asyncio.sleep(0.01)
    erased_at = RECEIVED + timedelta(hours=1)
    live.note(Erasure(id="x1", tenant="default", user_id="u1", requested_at=erased_at))
    erasures.release.set()
    assert await lookup == {("default", "u1"): erased_at}
    assert await live.latest({("default", "u1")}) == {("default", "u1"): erased_at}
