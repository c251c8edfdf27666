"""KafkaEventPublisher's memory bound while the broker takes nothing (a producer that never hands over)."""

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.producer.message_accumulator import BatchBuilder

from activity_service.domain.activity import Activity
from activity_service.domain.errors import Overloaded, PublishUnavailable
from activity_service.infrastructure.kafka.codec import encode
from activity_service.infrastructure.kafka.publisher import KafkaEventPublisher

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


class StuckProducer:
    """Knows the topic's partitions, but no batch is ever taken (as while the broker is down)."""

    def __init__(self) -> None:
        self.taken = 0

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(16384, 0)

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any:
        self.taken += 1
        await asyncio.Event().wait()


def events(prefix: str, count: int) -> list[Activity]:
    return [
        Activity.record(id=f"{prefix}{i}", user_id=f"u{i}", action="a", received_at=NOW) for i in range(count)
    ]


async def test_events_left_behind_by_requests_that_gave_up_count_against_the_bound() -> None:
    producer = StuckProducer()
    publisher = KafkaEventPublisher(producer, "t", timeout_seconds=0.01, max_in_flight=100)  # type: ignore[arg-type]
    with pytest.raises(PublishUnavailable):  # a request that reaches its deadline: its 30 events stay queued
        await publisher.publish(events("r0-", 30))
    for round_ in (1, 2):  # requests whose clients went away (cancelled): theirs stay queued too
        request = asyncio.create_task(publisher.publish(events(f"r{round_}-", 30)))
        await asyncio.sleep(0)  # the request runs until it waits for the acknowledgment
        assert publisher.in_flight == 30
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
    assert publisher.in_flight == 0
    with pytest.raises(Overloaded):  # 90 queued + 30 > 100: refused at once, not after the deadline
        publisher.publish(events("r3-", 30)).send(None)
    with pytest.raises(PublishUnavailable):  # what still fits is taken, and times out as before
        await publisher.publish(events("r4-", 10))


def large_events(prefix: str, count: int, size: int) -> list[Activity]:
    return [
        Activity.record(
            id=f"{prefix}{i}", user_id=f"u{i}", action="a", received_at=NOW, metadata={"blob": "x" * size}
        )
        for i in range(count)
    ]


async def test_the_bound_counts_bytes_too_so_large_events_cannot_pile_up() -> None:
    producer = StuckProducer()
    publisher = KafkaEventPublisher(
        producer,  # type: ignore[arg-type]
        "t",
        timeout_seconds=0.01,
        max_in_flight=20_000,
        max_in_flight_bytes=1_048_576,
    )
    accepted = 0
    for n in range(100):  # each request gives up (its event stays queued): ~32 KB each
        try:
            await publisher.publish(large_events(f"r{n}-", 1, 32_000))
        except Overloaded:
            break
        except PublishUnavailable:
            accepted += 1
    size = len(large_events("r0-", 1, 32_000)[0].user_id) + len(encode(large_events("r0-", 1, 32_000)[0]))
    assert accepted == 1_048_576 // size, "refused once the next one would pass 1 MiB, not at 20,000 events"
    assert publisher.in_flight_bytes == 0  # every request is over; only the queued batches hold bytes


async def test_a_publisher_holding_nothing_takes_a_request_larger_than_its_byte_bound() -> None:
    publisher = KafkaEventPublisher(
        StuckProducer(),  # type: ignore[arg-type]
        "t",
        timeout_seconds=0.01,
        max_in_flight=20_000,
        max_in_flight_bytes=1_048_576,
    )
    with pytest.raises(PublishUnavailable):  # taken (then times out): it could never pass otherwise
        await publisher.publish(large_events("big-", 40, 32_000))
    with pytest.raises(Overloaded):
        await publisher.publish(large_events("next-", 1, 100))
