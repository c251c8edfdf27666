"""The composition root: builds adapters from Settings and hands use cases to the entry points.

Clients are created inside the running event loop and closed on the way out, whatever happens. Each
builder takes its collaborators as parameters with production defaults, so tests and the bench pass
their own through the same door (``create_app(services=...)``, ``consumer_service(store=...)``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from activity_service.application.check_readiness import CheckReadiness
from activity_service.application.count_activities import CountActivities
from activity_service.application.erase_users import (
    ErasedUsers,
    GetErasure,
    LiveErasures,
    RequestErasure,
    RunErasures,
)
from activity_service.application.follow_activities import FollowActivities
from activity_service.application.get_activity import GetActivity
from activity_service.application.get_event_status import GetEventStatus
from activity_service.application.list_activities import ListActivities
from activity_service.application.persist_activities import PersistActivities, RetryPolicy
from activity_service.application.purge_expired import PurgeExpiredActivities
from activity_service.application.read_freshness import ReadFreshness
from activity_service.application.record_activity import RecordActivity
from activity_service.application.record_batch import RecordBatch
from activity_service.application.replay_activities import ReplayActivities
from activity_service.application.resends import RecentContent
from activity_service.domain.delivery import ReadBatch, Settled
from activity_service.infrastructure.kafka.connection import (
    ClientOptions,
    KafkaUnreachable,
    client_options,
    explain,
    start,
)
from activity_service.infrastructure.kafka.consumer import KafkaActivityConsumer
from activity_service.infrastructure.kafka.dead_letters import KafkaDeadLetterTopic
from activity_service.infrastructure.kafka.publisher import KafkaEventPublisher
from activity_service.infrastructure.kafka.replay import read_topic
from activity_service.infrastructure.kafka.tail import KafkaTail
from activity_service.infrastructure.kafka.topics import ensure_topics, partitions_of
from activity_service.infrastructure.mongo.store import open_mongo_store
from activity_service.infrastructure.observability.consumer import ConsumerMetrics
from activity_service.infrastructure.postgres.store import open_postgres_store
from activity_service.infrastructure.rate_limit import TokenBuckets
from activity_service.infrastructure.settings import KafkaSettings, Settings
from activity_service.infrastructure.store import Store
from activity_service.infrastructure.system import SystemClock, Uuid7Ids

log = logging.getLogger(__name__)

OpenStore = Callable[[Settings], AbstractAsyncContextManager[Store]]


def open_store(settings: Settings) -> AbstractAsyncContextManager[Store]:
    """The database the STORE setting names."""
    bounds = {"read_timeout_ms": settings.query.timeout_ms, "ping_timeout_ms": settings.readiness.timeout_ms}
    if settings.store == "postgresql":
        return open_postgres_store(settings.postgres, **bounds)
    return open_mongo_store(settings.mongodb, **bounds)


@dataclass(frozen=True, slots=True)
class ApiServices:
    """The use cases the HTTP routes run."""

    record_activity: RecordActivity
    record_batch: RecordBatch
    list_activities: ListActivities
    get_activity: GetActivity
    get_event_status: GetEventStatus
    count_activities: CountActivities
    follow_activities: FollowActivities
    request_erasure: RequestErasure
    get_erasure: GetErasure
    readiness: CheckReadiness


ServiceProvider = Callable[[], AbstractAsyncContextManager[ApiServices]]
"""What ``create_app(services=...)`` takes: opens the use cases when the app starts, closes them after."""


@asynccontextmanager
async def api_services(settings: Settings, store: OpenStore = open_store) -> AsyncIterator[ApiServices]:
    kafka = client_options(settings.kafka)
    async with store(settings) as database, _producer(settings, kafka) as producer:
        publisher = KafkaEventPublisher(
            producer,
            settings.kafka.topic,
            timeout_seconds=settings.ingest.publish_timeout_seconds,
            max_in_flight=settings.ingest.max_in_flight_events,
            max_in_flight_bytes=settings.ingest.max_in_flight_bytes,
        )
        freshness = ReadFreshness(
            database.progress, settings.kafka.topic, partitions=settings.kafka.topic_partitions
        )
        clock, ids = SystemClock(), Uuid7Ids()
        # One of each per process: a batch resend conflicts with a single event too; one erasure cache.
        live_erasures = LiveErasures(database.erasures, clock)
        recent = RecentContent(live_erasures)
        tail = KafkaTail(
            partial(_feed_consumer, settings, kafka),
            settings.kafka.topic,
            partial(partitions_of, kafka, settings.kafka.topic),
            buffer_events=settings.stream.buffer_events,
            idle_seconds=settings.stream.idle_seconds,
        )
        try:
            yield ApiServices(
                record_activity=RecordActivity(publisher, clock, ids, recent),
                record_batch=RecordBatch(
                    publisher, clock, ids, max_items=settings.ingest.max_batch_items, recent=recent
                ),
                list_activities=ListActivities(
                    database.activities,
                    freshness,
                    max_depth=settings.query.max_depth,
                    max_count=settings.query.max_count,
                ),
                get_activity=GetActivity(database.activities),
                get_event_status=GetEventStatus(database.activities, database.dead_letters, freshness),
                count_activities=CountActivities(database.counts, freshness),
                follow_activities=FollowActivities(tail, live_erasures),
                request_erasure=RequestErasure(database.erasures, ids, clock, live_erasures),
                get_erasure=GetErasure(database.erasures),
                readiness=CheckReadiness(
                    {"kafka": partial(_kafka_ping, publisher, kafka), database.kind: database.ping},
                    timeout_seconds=settings.readiness.timeout_ms / 1000,
                ),
            )
        finally:
            await tail.close()
            await publisher.close()


def rate_limiter(settings: Settings) -> TokenBuckets | None:
    """The clients' token buckets (no connection is made yet); None when RATE_LIMIT_ENABLED is false."""
    limits = settings.rate_limit
    if not limits.enabled:
        log.warning("RATE_LIMIT_ENABLED=false: clients are not rate limited")
        return None
    buckets = TokenBuckets(limits.events_per_second, limits.burst, limits.storage_uri)
    log.info(
        "rate limit: %g events/s, burst %d, per %s",
        limits.events_per_second,
        limits.burst,
        "deployment (shared through Redis)" if buckets.shared else "process",
    )
    return buckets


def address_limiter(settings: Settings, publishable: bool) -> TokenBuckets | None:
    """The buckets of publishable keys' client addresses (RATE_LIMIT_ADDRESS_*), where the keys' own
    are (memory or Redis); None when no key is ``publishable`` or RATE_LIMIT_ENABLED is false."""
    limits = settings.rate_limit
    if not (limits.enabled and publishable):
        return None
    log.info(
        "rate limit of publishable keys per client address: %g events/s, burst %d",
        limits.address_events_per_second,
        limits.address_burst,
    )
    return TokenBuckets(limits.address_events_per_second, limits.address_burst, limits.storage_uri)


@dataclass(frozen=True, slots=True)
class ConsumerServices:
    store: str
    """Where it stores, for the logs: the server and the database."""
    loop: KafkaActivityConsumer
    purge: PurgeExpiredActivities | None
    """Set when retention is on and the database cannot expire events itself: run it periodically."""
    erase: RunErasures
    """Run it periodically (CONSUMER_ERASURE_INTERVAL_SECONDS): erasures are carried out here."""


def group_consumer(settings: Settings, options: dict[str, Any]) -> AIOKafkaConsumer:
    """The consumer process's Kafka client: a group member that commits only what it settled."""
    return AIOKafkaConsumer(
        **options,
        group_id=settings.kafka.consumer_group,
        client_id=f"{settings.kafka.client_id}-consumer",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.consumer.max_batch_records,
        fetch_max_wait_ms=settings.consumer.fetch_max_wait_ms,
    )


@asynccontextmanager
async def consumer_service(
    settings: Settings,
    on_batch: Callable[[Settled], None] | None = None,
    store: OpenStore = open_store,
) -> AsyncIterator[ConsumerServices]:
    kafka = settings.kafka
    options = client_options(kafka)
    consumer = group_consumer(settings, options)
    async with store(settings) as database, _producer(settings, options) as producer:
        expires_by_itself = await database.apply_retention(settings.retention.days)
        clock = SystemClock()
        persist = PersistActivities(
            database.activities,
            KafkaDeadLetterTopic(producer, kafka.dead_letter_topic),
            database.dead_letters,
            erased=ErasedUsers(database.erasures),
            retry=RetryPolicy(settings.consumer.retry_initial_seconds, settings.consumer.retry_max_seconds),
            clock=clock,
            observer=ConsumerMetrics(),
        )
        loop = KafkaActivityConsumer(
            consumer,
            persist.execute,
            database.progress,
            max_records=settings.consumer.max_batch_records,
            fetch_timeout_ms=settings.consumer.fetch_timeout_ms,
            progress_interval_seconds=settings.consumer.progress_interval_seconds,
            batches_in_flight=settings.consumer.batches_in_flight if database.batches_at_once else 1,
            on_batch=on_batch,
        )
        consumer.subscribe([kafka.topic], listener=loop.rebalance_listener())
        await start(consumer, options)
        try:
            purge = None
            if not expires_by_itself:
                purge = PurgeExpiredActivities(database.activities, clock, days=settings.retention.days)
            erase = RunErasures(database.activities, database.dead_letters, database.erasures, clock)
            yield ConsumerServices(
                store=f"{database.server}, {database.where}", loop=loop, purge=purge, erase=erase
            )
        finally:
            await consumer.stop()  # leaves the group, so the partitions move on at once


class ReadTopic:
    """Reads a topic of the configured cluster, from ``start`` to ``end`` (see ``read_topic``)."""

    def __init__(self, options: ClientOptions) -> None:
        self._options = options

    def __call__(
        self, topic: str, *, start: datetime | None, end: datetime | None
    ) -> AsyncIterator[ReadBatch]:
        return read_topic(self._options, topic, start=start, end=end)


@dataclass(frozen=True, slots=True)
class ReplayServices:
    store: str
    """Where it stores, for the logs: the server and the database."""
    replay: ReplayActivities
    read: ReadTopic


@asynccontextmanager
async def replay_service(settings: Settings, store: OpenStore = open_store) -> AsyncIterator[ReplayServices]:
    async with store(settings) as database:
        yield ReplayServices(
            f"{database.server}, {database.where}",
            ReplayActivities(database.activities, database.dead_letters, ErasedUsers(database.erasures)),
            ReadTopic(client_options(settings.kafka)),
        )


async def _kafka_ping(publisher: KafkaEventPublisher, options: ClientOptions) -> None:
    """Readiness: the producer reaches the cluster; when it does not, the reason in words (a rotated
    password, an untrusted certificate, a broker that is down), for the log."""
    try:
        await publisher.ping()
    except KafkaError as exc:
        raise KafkaUnreachable(await explain(options, timeout_seconds=1.5)) from exc


def _feed_consumer(settings: Settings, options: ClientOptions) -> AIOKafkaConsumer:
    """A consumer of no group, for the live tail: it reads, commits nothing, disturbs no consumer."""
    return AIOKafkaConsumer(
        **options,
        group_id=None,
        client_id=f"{settings.kafka.client_id}-tail",
        enable_auto_commit=False,
        auto_offset_reset="none",
        fetch_max_wait_ms=100,  # a live view: what arrives is sent within a tenth of a second
    )


def topic_configs(kafka: KafkaSettings) -> dict[str, str]:
    """The configs of the topics the service creates: min.insync.replicas always (the durability of a
    202 must not depend on a broker default), retention.ms when KAFKA_RETENTION_HOURS is set."""
    configs = {"min.insync.replicas": str(kafka.topic_min_insync_replicas)}
    if kafka.retention_hours:
        configs["retention.ms"] = str(-1 if kafka.retention_hours < 0 else kafka.retention_hours * 3_600_000)
    return configs


@asynccontextmanager
async def _producer(
    settings: Settings, options: Mapping[str, Any] | None = None
) -> AsyncIterator[AIOKafkaProducer]:
    """Creates the topics when missing, then one idempotent producer that waits for all replicas. (The
    bench opens one too, from its settings alone.)"""
    kafka = settings.kafka
    options = client_options(kafka) if options is None else options
    try:
        await ensure_topics(
            options,
            [kafka.topic, kafka.dead_letter_topic],
            kafka.topic_partitions,
            kafka.replication_factor,
            topic_configs(kafka),
        )
    except KafkaUnreachable:
        raise
    except KafkaError as exc:
        raise RuntimeError(
            f"Kafka at {kafka.bootstrap_servers} refused to create or describe the topics "
            f"{kafka.topic!r} and {kafka.dead_letter_topic!r} ({exc}). Check the user's permissions (ACLs), "
            "or create the topics beforehand."
        ) from exc
    # acks=all, without idempotence: aiokafka's idempotent producer never recovers from the
    # OutOfOrderSequenceNumber a broker restart can leave it with (aio-libs/aiokafka#1017, open): the fault
    # suite saw every produce refused for 108 s after the broker was back, until the process restarted.
    # What idempotence prevented, a retried batch written twice, the consumer absorbs: it stores each
    # event id once per tenant.
    producer = AIOKafkaProducer(
        **options,
        client_id=kafka.client_id,
        acks="all",
        enable_idempotence=False,
        linger_ms=kafka.producer_linger_ms,
        max_batch_size=kafka.producer_max_batch_bytes,
        request_timeout_ms=kafka.producer_request_timeout_ms,
    )
    await start(producer, options)
    try:
        yield producer
    finally:
        await producer.stop()
