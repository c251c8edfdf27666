"""KafkaEventPublisher and the topic set-up against the real broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from activity_service.domain.activity import Activity
from activity_service.domain.errors import Overloaded, PublishUnavailable
from activity_service.infrastructure.kafka.codec import decode
from activity_service.infrastructure.kafka.publisher import KafkaEventPublisher
from activity_service.infrastructure.kafka.topics import ensure_topics
from tests.conftest import Stack

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


@pytest.fixture
async def producer(stack: Stack, unique_name: str) -> AsyncIterator[AIOKafkaProducer]:
    await ensure_topics(stack.kafka_bootstrap, [unique_name], partitions=3, replication_factor=1)
    await ensure_topics(
        stack.kafka_bootstrap, [unique_name], partitions=3, replication_factor=1
    )  # idempotent
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def read_all(stack: Stack, topic: str, expected: int) -> list[tuple[int, bytes, Activity]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=stack.kafka_bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    seen: list[tuple[int, bytes, Activity]] = []
    try:
        for _ in range(60):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                seen.extend((r.partition, r.key, decode(r.value)) for r in records)
            if len(seen) >= expected:
                break
    finally:
        await consumer.stop()
    return seen


async def test_published_activities_are_on_the_topic_keyed_by_user(
    stack: Stack, unique_name: str, producer: AIOKafkaProducer
) -> None:
    publisher = KafkaEventPublisher(producer, unique_name, timeout_seconds=10, max_in_flight=1000)
    activities = [
        Activity.record(
            id=f"e{i}", user_id=f"user-{i % 4}", action="view", received_at=NOW, metadata={"i": i}
        )
        for i in range(40)
    ]
    await publisher.publish(activities[:1])
    await publisher.publish(activities[1:])
    assert publisher.in_flight == 0

    seen = await read_all(stack, unique_name, len(activities))
    assert sorted((a.id for _, _, a in seen), key=lambda i: int(i[1:])) == [a.id for a in activities]
    assert {a.id: a for _, _, a in seen} == {a.id: a for a in activities}
    for partition, key, activity in seen:
        assert key == activity.user_id.encode()
        # The partition any Kafka client picks for that key (murmur2), so per-user ordering holds
        # alongside other producers of the topic.
        assert partition == DefaultPartitioner()(key, [0, 1, 2], [0, 1, 2])


async def test_concurrent_publishes_share_batches_and_each_waits_for_its_own_events(
    stack: Stack, unique_name: str, producer: AIOKafkaProducer
) -> None:
    publisher = KafkaEventPublisher(producer, unique_name, timeout_seconds=10, max_in_flight=10_000)
    requests = [
        [
            Activity.record(
                id=f"r{r}-e{i}", user_id=f"user-{(r * 7 + i) % 50}", action="view", received_at=NOW
            )
            for i in range(1 + r % 5 * 40)
        ]
        for r in range(60)
    ]
    await asyncio.gather(*(publisher.publish(activities) for activities in requests))
    assert publisher.in_flight == 0
    expected = sorted(a.id for activities in requests for a in activities)
    seen = await read_all(stack, unique_name, len(expected))
    assert sorted(a.id for _, _, a in seen) == expected  # each once: none lost, none repeated
    per_partition: dict[int, list[str]] = {}
    for partition, _, activity in seen:
        per_partition.setdefault(partition, []).append(activity.id)
    for ids in per_partition.values():  # within a request, a partition keeps the request's order
        for r in range(60):
            mine = [i for i in ids if i.startswith(f"r{r}-")]
            assert mine == sorted(mine, key=lambda i: int(i.split("-e")[1]))


async def test_a_publish_the_producer_cannot_take_is_unavailable_not_accepted(
    stack: Stack, unique_name: str
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    publisher = KafkaEventPublisher(producer, unique_name, timeout_seconds=2, max_in_flight=100)
    await producer.stop()
    with pytest.raises(PublishUnavailable):
        await publisher.publish([Activity.record(id="e1", user_id="u", action="a", received_at=NOW)])
    assert publisher.in_flight == 0


async def test_more_than_the_in_flight_bound_is_refused_at_once(
    unique_name: str, producer: AIOKafkaProducer
) -> None:
    publisher = KafkaEventPublisher(producer, unique_name, timeout_seconds=10, max_in_flight=3)
    activities = [Activity.record(id=f"e{i}", user_id="u", action="a", received_at=NOW) for i in range(4)]
    with pytest.raises(Overloaded):
        await publisher.publish(activities)
    assert publisher.in_flight == 0
    await publisher.publish(activities[:3])


async def test_ping_answers_while_the_broker_is_up(unique_name: str, producer: AIOKafkaProducer) -> None:
    await KafkaEventPublisher(producer, unique_name, timeout_seconds=1, max_in_flight=1).ping()
