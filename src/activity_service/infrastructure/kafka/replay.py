"""Read a topic again, from a time (or the beginning) to a time (or its end when the read began),
without joining any consumer group, so the live consumers are not disturbed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from activity_service.domain.delivery import LogPosition, ReadBatch
from activity_service.infrastructure.kafka.codec import decode
from activity_service.infrastructure.kafka.connection import Connection, options_of
from activity_service.infrastructure.kafka.connection import start as start_client
from activity_service.infrastructure.kafka.topics import partitions_of


async def read_topic(
    connection: Connection,
    topic: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    batch_size: int = 1000,
) -> AsyncIterator[ReadBatch]:
    """Yield the topic's events in batches. Bounds compare with each message's Kafka timestamp (the
    time the API published it); without ``end`` the read stops at the end offsets seen when it began."""
    consumer = AIOKafkaConsumer(
        **options_of(connection),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",  # an assigned partition starts at its beginning unless we seek
        client_id="activity-replay",
    )
    partitions = [TopicPartition(topic, p) for p in await partitions_of(connection, topic)]
    await start_client(consumer, connection)
    try:
        consumer.assign(partitions)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        await _seek_to_start(consumer, partitions, start, ends)
        end_ms = None if end is None else int(end.timestamp() * 1000)
        remaining = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
        while remaining:
            fetched = await consumer.getmany(*remaining, timeout_ms=1000, max_records=batch_size)
            activities = []
            positions = []
            unreadable = []
            for tp, records in fetched.items():
                for record in records:
                    if record.offset >= ends[tp] or (end_ms is not None and record.timestamp > end_ms):
                        remaining.discard(tp)
                        break
                    try:
                        activities.append(decode(record.value))
                        positions.append(LogPosition(tp.topic, tp.partition, record.offset))
                    except Exception as exc:  # unreadable, reported; the live consumer dead-lettered it
                        unreadable.append(f"{tp.topic}:{tp.partition}:{record.offset}: {exc}")
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
            if activities or unreadable:
                yield ReadBatch(tuple(activities), tuple(unreadable), tuple(positions))
    finally:
        await consumer.stop()


async def _seek_to_start(
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    start: datetime | None,
    ends: dict[TopicPartition, int],
) -> None:
    if start is None:
        return  # auto_offset_reset="earliest" starts every partition at its beginning
    found = await consumer.offsets_for_times({tp: int(start.timestamp() * 1000) for tp in partitions})
    for tp in partitions:
        at = found.get(tp)
        consumer.seek(tp, at.offset if at is not None else ends[tp])
