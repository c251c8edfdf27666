"""The composition root: builds adapters from Settings and hands use cases to the entry points.

Clients are created inside the running event loop and closed on the way out, whatever happens.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from activity_service.application.check_readiness import CheckReadiness
from activity_service.application.get_activity import GetActivity
from activity_service.application.get_event_status import GetEventStatus
from activity_service.application.list_activities import ListActivities
from activity_service.application.persist_activities import PersistActivities
from activity_service.application.purge_expired import PurgeExpiredActivities
from activity_service.application.read_freshness import ReadFreshness
from activity_service.application.record_activity import RecordActivity
from activity_service.application.record_batch import RecordBatch
from activity_service.application.replay_activities import ReplayActivities
from activity_service.infrastructure.kafka.consumer import (
    Backoff,
    BatchReport,
    DeliveryRecords,
    KafkaActivityConsumer,
)
from activity_service.infrastructure.kafka.dead_letters import KafkaDeadLetters
from activity_service.infrastructure.kafka.publisher import KafkaEventPublisher
from activity_service.infrastructure.kafka.topics import ensure_topics
from activity_service.infrastructure.mongo.delivery import MongoDeadLetterLog, MongoProgressLog
from activity_service.infrastructure.mongo.repository import MongoActivityRepository
from activity_service.infrastructure.rate_limit import TokenBuckets
from activity_service.infrastructure.settings import Settings
from activity_service.infrastructure.system import SystemClock, Uuid7Ids

log = logging.getLogger(__name__)

# Collections beside the activities, in the same database.
DEAD_LETTERS = "dead_letters"
PROGRESS = "consumer_progress"


@dataclass(frozen=True, slots=True)
class ApiServices:
    settings: Settings
    record_activity: RecordActivity
    record_batch: RecordBatch
    list_activities: ListActivities
    get_activity: GetActivity
    get_event_status: GetEventStatus
    readiness: CheckReadiness
    rate_limiter: TokenBuckets | None
    """The clients' token buckets; None when RATE_LIMIT_ENABLED is false."""


@asynccontextmanager
async def api_services(settings: Settings) -> AsyncIterator[ApiServices]:
    async with (
        _mongo_database(settings) as database,
        _producer(settings) as producer,
        _token_buckets(settings) as rate_limiter,
    ):
        publisher = KafkaEventPublisher(
            producer,
            settings.kafka.topic,
            timeout_seconds=settings.ingest.publish_timeout_seconds,
            max_in_flight=settings.ingest.max_in_flight_events,
        )
        repository = await _activities(database, settings)
        dead_letters = MongoDeadLetterLog(database[DEAD_LETTERS])
        await dead_letters.ensure_indexes()
        freshness = ReadFreshness(
            MongoProgressLog(database[PROGRESS]),
            settings.kafka.topic,
            partitions=settings.kafka.topic_partitions,
        )
        services = ApiServices(
            settings=settings,
            record_activity=RecordActivity(publisher, SystemClock(), Uuid7Ids()),
            record_batch=RecordBatch(
                publisher, SystemClock(), Uuid7Ids(), max_items=settings.ingest.max_batch_items
            ),
            list_activities=ListActivities(repository, freshness),
            get_activity=GetActivity(repository),
            get_event_status=GetEventStatus(repository, dead_letters, freshness),
            readiness=CheckReadiness(
                {"kafka": publisher.ping, "mongodb": repository.ping}, timeout_seconds=2.0
            ),
            rate_limiter=rate_limiter,
        )
        try:
            yield services
        finally:
            await publisher.close()


@asynccontextmanager
async def _token_buckets(settings: Settings) -> AsyncIterator[TokenBuckets | None]:
    limits = settings.rate_limit
    if not limits.enabled:
        log.warning("RATE_LIMIT_ENABLED=false: clients are not rate limited")
        yield None
        return
    buckets = TokenBuckets(limits.events_per_second, limits.burst, limits.storage_uri)
    log.info(
        "rate limit: %g events/s, burst %d, per %s",
        limits.events_per_second,
        limits.burst,
        "deployment (shared through Redis)" if buckets.shared else "process",
    )
    try:
        yield buckets
    finally:
        await buckets.close()


@dataclass(frozen=True, slots=True)
class ConsumerServices:
    loop: KafkaActivityConsumer
    purge: PurgeExpiredActivities | None
    """Set when retention is on and the database cannot expire events itself: run it periodically."""


@asynccontextmanager
async def consumer_service(
    settings: Settings, on_batch: Callable[[BatchReport], None] | None = None
) -> AsyncIterator[ConsumerServices]:
    kafka = settings.kafka
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=kafka.consumer_group,
        client_id=f"{kafka.client_id}-consumer",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.consumer.max_batch_records,
    )
    async with _mongo_database(settings) as database, _producer(settings) as producer:
        repository = await _activities(database, settings)
        dead_letter_log = MongoDeadLetterLog(database[DEAD_LETTERS])
        await dead_letter_log.ensure_indexes()
        server_expires = await repository.apply_retention(settings.retention.days)
        loop = KafkaActivityConsumer(
            consumer,
            PersistActivities(repository).execute,
            DeliveryRecords(
                topic=KafkaDeadLetters(producer, kafka.dead_letter_topic),
                log=dead_letter_log,
                progress=MongoProgressLog(database[PROGRESS]),
            ),
            max_records=settings.consumer.max_batch_records,
            fetch_timeout_ms=settings.consumer.fetch_timeout_ms,
            backoff=Backoff(settings.consumer.retry_initial_seconds, settings.consumer.retry_max_seconds),
            progress_interval_seconds=settings.consumer.progress_interval_seconds,
            on_batch=on_batch,
        )
        consumer.subscribe([kafka.topic], listener=loop.rebalance_listener())
        await consumer.start()
        try:
            purge = None
            if not server_expires:
                purge = PurgeExpiredActivities(repository, SystemClock(), days=settings.retention.days)
            yield ConsumerServices(loop=loop, purge=purge)
        finally:
            await consumer.stop()  # leaves the group, so the partitions move on at once


@asynccontextmanager
async def replay_service(settings: Settings) -> AsyncIterator[ReplayActivities]:
    async with _mongo_database(settings) as database:
        repository = await _activities(database, settings)
        yield ReplayActivities(repository, MongoDeadLetterLog(database[DEAD_LETTERS]))


async def _activities(database: AsyncDatabase[dict[str, Any]], settings: Settings) -> MongoActivityRepository:
    repository = MongoActivityRepository(database[settings.mongodb.collection])
    await repository.ensure_indexes()
    return repository


@asynccontextmanager
async def _mongo_database(settings: Settings) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    mongo = settings.mongodb
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongo.uri, tz_aware=True, serverSelectionTimeoutMS=mongo.timeout_ms, appname="activity-service"
    )
    try:
        yield client[mongo.database]
    finally:
        await client.close()


@asynccontextmanager
async def _producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    """Creates the topics when missing, then one idempotent producer that waits for all replicas."""
    kafka = settings.kafka
    try:
        await ensure_topics(
            kafka.bootstrap_servers,
            [kafka.topic, kafka.dead_letter_topic],
            kafka.topic_partitions,
            kafka.replication_factor,
        )
    except KafkaError as exc:
        raise RuntimeError(
            f"cannot reach Kafka at {kafka.bootstrap_servers} ({exc}); is the broker running? "
            "Locally: make stack-up. Elsewhere: check KAFKA_BOOTSTRAP_SERVERS."
        ) from exc
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers,
        client_id=kafka.client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=kafka.producer_linger_ms,
        max_batch_size=kafka.producer_max_batch_bytes,
    )
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()
