"""The live tail against the real broker: following from now, filters, resuming inside and before what
it holds (a catch-up read from Kafka), overflow for a follower that fell behind, and stopping when idle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from activity_service.domain.activity import Activity
from activity_service.domain.feed import FeedBatch, FeedEntry, FeedFilter, FeedOverflow
from activity_service.infrastructure.kafka.codec import encode
from activity_service.infrastructure.kafka.tail import KafkaTail
from activity_service.infrastructure.kafka.topics import ensure_topics, partitions_of
from tests.conftest import Stack

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


@pytest.fixture
async def topic(stack: Stack, unique_name: str) -> str:
    await ensure_topics(stack.kafka_bootstrap, [unique_name], 3, 1)
    return unique_name


@pytest.fixture
async def producer(stack: Stack) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


def tail(stack: Stack, topic: str, *, buffer_events: int = 1000, idle_seconds: float = 30) -> KafkaTail:
    def consumer() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=stack.kafka_bootstrap,
            group_id=None,
            auto_offset_reset="none",
            fetch_max_wait_ms=50,
        )

    return KafkaTail(
        consumer,
        topic,
        partial(partitions_of, stack.kafka_bootstrap, topic),
        buffer_events=buffer_events,
        idle_seconds=idle_seconds,
    )


async def publish(
    producer: AIOKafkaProducer, topic: str, *ids: str, user: str = "u1", action: str = "view"
) -> None:
    for event_id in ids:
        activity = Activity.record(id=event_id, user_id=user, action=action, received_at=NOW)
        await producer.send_and_wait(topic, encode(activity), key=event_id.encode())


async def read_by_the_tail(live: KafkaTail, count: int) -> None:
    """Until the tail has read ``count`` messages of the topic (a follower starting now starts past them)."""
    async with asyncio.timeout(10):
        while True:
            probe = live.follow(FeedFilter(), None)
            start = await anext(aiter(probe))
            await probe.aclose()  # type: ignore[attr-defined]
            if sum(start.cursor.values()) >= count:
                return
            await asyncio.sleep(0.05)


async def collect(batches: AsyncIterator[FeedBatch], count: int, within: float = 10) -> list[FeedEntry]:
    found: list[FeedEntry] = []
    async with asyncio.timeout(within):
        while len(found) < count:
            found += (await anext(batches)).entries
    return found


async def test_a_follower_gets_what_arrives_after_it_started_filtered(
    stack: Stack, topic: str, producer: AIOKafkaProducer
) -> None:
    live = tail(stack, topic)
    try:
        await publish(producer, topic, "before")
        everything = aiter(live.follow(FeedFilter(), None))
        buys = aiter(live.follow(FeedFilter(actions=("buy",)), None))
        start = await anext(everything)
        await anext(buys)
        assert start.entries == () and set(start.cursor) == {0, 1, 2}
        await publish(producer, topic, "a", "b")
        await publish(producer, topic, "c", action="buy")
        # Partitions interleave in any order; each partition keeps its own.
        assert sorted(e.activity.id for e in await collect(everything, 3)) == ["a", "b", "c"]
        assert [e.activity.id for e in await collect(buys, 1)] == ["c"]
    finally:
        await live.close()


async def test_resuming_from_a_cursor_gives_exactly_what_followed_it_also_from_before_the_tail_started(
    stack: Stack, topic: str, producer: AIOKafkaProducer
) -> None:
    first = tail(stack, topic)
    try:
        batches = aiter(first.follow(FeedFilter(), None))
        await anext(batches)
        await publish(producer, topic, *(f"e{i}" for i in range(6)))
        seen = await collect(batches, 6)
    finally:
        await first.close()
    await publish(producer, topic, *(f"e{i}" for i in range(6, 10)))
    # A new process: its tail starts at the end; the resume point lies before it, in Kafka.
    second = tail(stack, topic)
    try:
        resumed = aiter(second.follow(FeedFilter(), seen[2].cursor))
        await anext(resumed)
        rest = await collect(resumed, 7)
        assert sorted(e.activity.id for e in rest) == sorted(a.activity.id for a in seen[3:]) + [
            f"e{i}" for i in range(6, 10)
        ]
        await publish(producer, topic, "e10")
        [e10] = await collect(resumed, 1)
        assert e10.activity.id == "e10"
        again = aiter(second.follow(FeedFilter(), e10.cursor))
        await anext(again)
        await publish(producer, topic, "e11")
        assert [e.activity.id for e in await collect(again, 1)] == ["e11"]
    finally:
        await second.close()


async def test_a_follower_that_falls_behind_what_is_held_overflows(
    stack: Stack, topic: str, producer: AIOKafkaProducer
) -> None:
    live = tail(stack, topic, buffer_events=100)
    try:
        slow = aiter(live.follow(FeedFilter(), None))
        await anext(slow)
        await publish(producer, topic, "first")
        assert [e.activity.id for e in await collect(slow, 1)] == ["first"]  # it follows...
        await publish(producer, topic, *(f"e{i}" for i in range(300)))  # ...then stops reading
        await read_by_the_tail(live, 301)
        with pytest.raises(FeedOverflow):
            await collect(slow, 300)
    finally:
        await live.close()


async def test_the_tail_stops_when_nobody_follows_and_starts_again_from_the_end(
    stack: Stack, topic: str, producer: AIOKafkaProducer
) -> None:
    live = tail(stack, topic, idle_seconds=0)
    try:
        batches = live.follow(FeedFilter(), None)
        await anext(aiter(batches))
        await batches.aclose()  # type: ignore[attr-defined]
        await asyncio.sleep(0.1)  # the stop is a task of its own
        assert not live.reading, "the tail still reads with no follower"
        await publish(producer, topic, "while-nobody-watched")
        again = aiter(live.follow(FeedFilter(), None))
        await anext(again)
        await publish(producer, topic, "new")
        assert [e.activity.id for e in await collect(again, 1)] == ["new"]
    finally:
        await live.close()


async def test_caught_up_followers_are_handed_one_batch_and_each_filter_its_own(
    stack: Stack, topic: str, producer: AIOKafkaProducer
) -> None:
    """Made once for all the followers at the same point with the same filter (200 streams building their
    own was the live tail's whole cost), yet every filter still gets exactly what matches it."""
    live = tail(stack, topic)
    try:
        await publish(producer, topic, "warm")
        await read_by_the_tail(live, 1)
        first, second = aiter(live.follow(FeedFilter(), None)), aiter(live.follow(FeedFilter(), None))
        buys = aiter(live.follow(FeedFilter(actions=("buy",)), None))
        for follower in (first, second, buys):
            await anext(follower)  # where each starts: the same point
        await publish(producer, topic, "a", action="buy")
        # The first batch after a start may be each follower's own (the tail moved on before it resumed);
        # from then on they stand where the tail stands and share.
        pairs = [(await collect(first, 1), await collect(second, 1))]
        await publish(producer, topic, "b", "c", action="buy")
        await publish(producer, topic, "d")
        shared: list[tuple[FeedBatch, FeedBatch]] = []
        async with asyncio.timeout(10):  # woken by the same hand-over, as streams are: one after the other
            while sum(len(one.entries) for one, _ in shared) < 3:
                shared.append((await anext(first), await anext(second)))
        assert all(one is other for one, other in shared), "followers at one point share each batch"
        ids = [e.activity.id for one, _ in pairs for e in one] + [
            e.activity.id for one, _ in shared for e in one.entries
        ]
        assert sorted(ids) == ["a", "b", "c", "d"]
        bought = await collect(buys, 3)
        assert sorted(e.activity.id for e in bought) == ["a", "b", "c"]
    finally:
        await live.close()
