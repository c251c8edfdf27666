"""KafkaEventPublisher's memory bound while the broker takes nothing (a producer that never hands over)."""

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.producer.message_accumulator import BatchBuilder

from activity_service.domain.activity import Activity
from activity_service.domain.errors import Overloaded, PublishUnavailable
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
