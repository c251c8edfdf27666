"""Kafka for the bench: topics, offsets, and the raw producer (the ceiling of scenario 3 and the pre-fill of
scenario 4). The producer is the service's own (`bootstrap._producer`), so its settings are identical to
the API's by construction, whatever they become."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

# The composition root's producer factory: private, but using it is the only way to guarantee that the
# ceiling producer has exactly the service's settings (acks, idempotence, linger, batch size, ...).
from activity_service.bootstrap import _producer
from activity_service.infrastructure.settings import Settings
from bench.stats import ms, percentile

Message = tuple[bytes, bytes]


async def end_offsets(bootstrap: str, topic: str) -> int:
    """How many records the topic holds (sum of the partitions' high watermarks)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        offsets = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
    finally:
        await consumer.stop()
    return int(sum(offsets.values()))


async def committed(admin: AIOKafkaAdminClient, group: str, topic: str) -> int:
    offsets = await admin.list_consumer_group_offsets(group)
    return int(sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0))


async def delete_topics(bootstrap: str, prefix: str) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` (this run's), so the broker stays small."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-admin")
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()
    return doomed


async def produce(settings: Settings, count: int, message: Callable[[int], Message]) -> float:
    """Send events 0..count-1 as fast as the producer takes them; returns events/s (acknowledged)."""
    window = 20_000
    async with _producer(settings) as producer:
        started = time.perf_counter()
        pending: list[asyncio.Future[Any]] = []
        for n in range(count):
            key, value = message(n)
            pending.append(await producer.send(settings.kafka.topic, value=value, key=key))
            if len(pending) >= window:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
        return count / (time.perf_counter() - started)


async def raw_producer_rate(
    settings: Settings, seconds: float, workers: int, batch: int, message: Callable[[int], Message]
) -> dict[str, float]:
    """The ceiling of batch ingest: ``workers`` concurrent senders (as many as wrk's connections), each
    sending ``batch`` pre-encoded events and waiting for all their acknowledgments before the next
    batch, exactly as the API's publisher does for one batch request; no HTTP, no validation, no
    encoding. Returns acknowledged events/s and the batch round-trip percentiles."""
    sent = 0
    round_trips: list[float] = []
    async with _producer(settings) as producer:
        topic = settings.kafka.topic

        async def sender(offset: int) -> None:
            nonlocal sent
            n = offset
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                deliveries = []
                for _ in range(batch):
                    key, value = message(n)
                    n += 1
                    deliveries.append(await producer.send(topic, value=value, key=key))
                await asyncio.gather(*deliveries)
                round_trips.append(time.perf_counter() - started)
                sent += batch

        # A short warm-up so that the first metadata fetch and connection are not measured.
        deadline = time.perf_counter() + min(1.0, seconds / 4)
        await asyncio.gather(*(sender(w * 10_000_000) for w in range(workers)))
        sent, round_trips = 0, []
        cpu = time.process_time()
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(sender((w + workers) * 10_000_000) for w in range(workers)))
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
    return {
        "events_per_second": round(sent / elapsed, 1),
        "events": sent,
        "seconds": round(elapsed, 3),
        "cpu_percent": round(100 * cpu / elapsed, 1),
        "cpu_us_per_event": round(1e6 * cpu / sent, 1) if sent else 0.0,
        "batch_round_trip_p50_ms": ms(percentile(round_trips, 50)),
        "batch_round_trip_p99_ms": ms(percentile(round_trips, 99)),
    }
