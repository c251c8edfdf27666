"""The consumer loop in-process against the real broker and database, for what a process test cannot
time precisely: a crash after the write but before the commit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from activity_service.application.erase_users import ErasedUsers
from activity_service.application.persist_activities import PersistActivities, RetryPolicy
from activity_service.domain.activity import Activity
from activity_service.domain.delivery import LogPosition
from activity_service.domain.ports import StoreOutcome
from activity_service.infrastructure.kafka.codec import encode
from activity_service.infrastructure.kafka.consumer import KafkaActivityConsumer
from activity_service.infrastructure.kafka.dead_letters import KafkaDeadLetterTopic
from activity_service.infrastructure.kafka.topics import ensure_topics
from activity_service.infrastructure.mongo.compat import ServerQuirks
from activity_service.infrastructure.mongo.delivery import MongoDeadLetterLog, MongoProgressLog
from activity_service.infrastructure.mongo.erasures import MongoErasureLog
from activity_service.infrastructure.mongo.repository import MongoActivityRepository
from activity_service.infrastructure.system import SystemClock
from tests.conftest import Stack


class Crash(BaseException):
    """Stands for SIGKILL: not an Exception, so no retry loop catches it."""


class CrashingAfterWrite(MongoActivityRepository):
    """The real repository; its first write succeeds and then the process "dies" before anything else."""

    async def add_many(
        self, activities: Sequence[Activity], positions: Sequence[LogPosition] | None = None
    ) -> StoreOutcome:
        await super().add_many(activities, positions)
        raise Crash


class Counting(MongoActivityRepository):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.outcomes: list[StoreOutcome] = []

    async def add_many(
        self, activities: Sequence[Activity], positions: Sequence[LogPosition] | None = None
    ) -> StoreOutcome:
        outcome = await super().add_many(activities, positions)
        self.outcomes.append(outcome)
        return outcome


@pytest.fixture
async def producer(stack: Stack) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def run_until(
    stack: Stack,
    topic: str,
    database: Any,
    quirks: ServerQuirks,
    producer: AIOKafkaProducer,
    repository: MongoActivityRepository,
    done: Callable[[], Awaitable[bool]],
) -> None:
    persist = PersistActivities(
        repository,
        KafkaDeadLetterTopic(producer, f"{topic}.dlq"),
        MongoDeadLetterLog(database["dead_letters"], quirks),
        erased=ErasedUsers(MongoErasureLog(database["erasures"], quirks)),
        retry=RetryPolicy(0.05, 0.2),
        clock=SystemClock(),
    )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.kafka_bootstrap,
        group_id=f"{topic}-group",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    loop = KafkaActivityConsumer(
        consumer,
        persist.execute,
        MongoProgressLog(database["consumer_progress"], quirks),
        max_records=100,
        fetch_timeout_ms=200,
        progress_interval_seconds=0.2,
    )
    consumer.subscribe([topic], listener=loop.rebalance_listener())
    await consumer.start()
    stop = asyncio.Event()
    try:
        task = asyncio.create_task(loop.run(stop))
        for _ in range(300):
            if task.done() or await done():
                break
            await asyncio.sleep(0.1)
        stop.set()
        await task
    finally:
        await consumer.stop()


async def test_a_crash_after_the_write_before_the_commit_redelivers_and_stores_once(
    stack: Stack, unique_name: str, database: Any, quirks: ServerQuirks, producer: AIOKafkaProducer
) -> None:
    await ensure_topics(stack.kafka_bootstrap, [unique_name, f"{unique_name}.dlq"], 1, 1)
    now = datetime.now(UTC)
    for i in range(60):
        activity = Activity.record(id=f"c{i:03d}", user_id="u", action="a", received_at=now)
        await producer.send_and_wait(unique_name, encode(activity), key=b"u")

    async def never() -> bool:
        return False

    crashing = CrashingAfterWrite(database["activities"], quirks)
    with pytest.raises(Crash):
        await run_until(stack, unique_name, database, quirks, producer, crashing, never)
    stored_before_restart = await database["activities"].count_documents({})
    assert stored_before_restart > 0

    async def all_stored() -> bool:
        return await database["activities"].count_documents({}) == 60

    restarted = Counting(database["activities"], quirks)
    await run_until(stack, unique_name, database, quirks, producer, restarted, all_stored)
    assert await database["activities"].count_documents({}) == 60
    # The crashed batch came back: its events met themselves already stored.
    assert sum(o.duplicates for o in restarted.outcomes) == stored_before_restart
    progress = await MongoProgressLog(database["consumer_progress"], quirks).read(unique_name)
    assert [(p.partition, p.next_offset, p.caught_up) for p in progress] == [(0, 60, True)]
