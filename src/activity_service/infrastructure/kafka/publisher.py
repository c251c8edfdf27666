"""EventPublisher on Kafka: one shared idempotent producer, keyed by user, acknowledged by all replicas.

Events are not handed to the producer one by one (``send()`` costs a future, a partition lookup and
batch bookkeeping per event, and resolving a future per event on the acknowledgment: about 10 µs of
CPU each, the largest share of a batch POST). Instead every concurrent request appends its encoded
events straight into one record batch per partition, which a single sender per partition hands to the
producer (``send_batch``) while the previous one is with the broker; a request waits for the batches
that hold its events. The broker sees the same record batches as before (idempotent, acks=all, keyed
by user with the Java client's murmur2 partitioner), and the producer still owns retries and ordering.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2
from aiokafka.producer.message_accumulator import BatchBuilder
from opentelemetry.trace import SpanKind

from activity_service.domain.activity import Activity
from activity_service.domain.errors import Overloaded, PublishUnavailable
from activity_service.infrastructure.kafka.codec import encode
from activity_service.infrastructure.observability import metrics
from activity_service.infrastructure.observability.tracing import kafka_headers, tracer, tracing_enabled

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]


class KafkaEventPublisher:
    """Publishes activities and returns only once the broker acknowledged all of them.

    Bounds: at most ``max_in_flight`` events, and ``max_in_flight_bytes`` of them encoded, wait for an
    acknowledgment in this process, and at most as many wait to be handed to the producer (events of
    requests that already gave up stay queued until the broker takes them: while it is down they would
    pile up). More are refused at once with Overloaded, so memory stays bounded: in bytes, since events
    range from a hundred bytes to INGEST_MAX_EVENT_BYTES (a publisher holding nothing takes any one
    request, so that no request can be too large to ever pass). Each publish has a deadline
    (``timeout_seconds``) after which the caller gets PublishUnavailable, never a silent success.
    """

    def __init__(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        *,
        timeout_seconds: float,
        max_in_flight: int,
        max_in_flight_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._timeout = timeout_seconds
        self._max_in_flight = max_in_flight
        self._max_in_flight_bytes = max_in_flight_bytes
        self._in_flight = 0
        self._in_flight_bytes = 0
        self._unsent = 0
        """Events appended to a lane's batches and not yet handed to the producer."""
        self._unsent_bytes = 0
        self._lanes: dict[int, _Lane] = {}
        metrics.EVENTS_IN_FLIGHT.set_function(lambda: self._in_flight)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def in_flight_bytes(self) -> int:
        return self._in_flight_bytes

    async def publish(self, activities: Sequence[Activity]) -> None:
        count = len(activities)
        records = [(a.user_id.encode(), encode(a)) for a in activities]  # their size decides admission
        size = sum(len(key) + len(value) for key, value in records)
        held, held_bytes = max(self._in_flight, self._unsent), max(self._in_flight_bytes, self._unsent_bytes)
        if held + count > self._max_in_flight or (held and held_bytes + size > self._max_in_flight_bytes):
            metrics.EVENTS_UNAVAILABLE.labels("overloaded").inc(count)
            raise Overloaded(f"{held} events ({held_bytes} bytes) already await the event log", retry_after=1)
        self._in_flight += count
        self._in_flight_bytes += size
        started = time.perf_counter()
        try:
            if tracing_enabled():
                with tracer().start_as_current_span("activities publish", kind=SpanKind.PRODUCER) as span:
                    span.set_attributes(
                        {"messaging.destination.name": self._topic, "messaging.batch.message_count": count}
                    )
                    await self._publish(records, size, kafka_headers())
            else:
                await self._publish(records, size, None)
        except PublishUnavailable:
            metrics.EVENTS_UNAVAILABLE.labels("not_acknowledged").inc(count)
            raise
        finally:
            self._in_flight -= count
            self._in_flight_bytes -= size
        metrics.PUBLISH_DURATION.observe(time.perf_counter() - started)
        metrics.EVENTS_ACCEPTED.inc(count)

    async def _publish(self, records: list[tuple[bytes, bytes]], size: int, headers: Headers | None) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        try:
            async with asyncio.timeout_at(deadline):
                partitions = sorted(await self._producer.partitions_for(self._topic))
        except TimeoutError:
            raise PublishUnavailable("the event log did not answer in time", retry_after=2) from None
        except KafkaError as exc:
            raise PublishUnavailable(f"the event log refused the events: {exc}", retry_after=2) from exc
        batches: set[_Batch] = set()
        touched: set[_Lane] = set()
        for key, value in records:
            partition = partitions[_key_hash(key) % len(partitions)]
            lane = self._lanes.get(partition)
            if lane is None:
                lane = self._lanes[partition] = _Lane(self, partition)
            batches.add(lane.append(key, value, headers))
            touched.add(lane)
        self._unsent += len(records)
        self._unsent_bytes += size
        for lane in touched:
            lane.wake()
        _, pending = await asyncio.wait(
            [batch.acknowledged for batch in batches], timeout=max(0.0, deadline - loop.time())
        )
        if pending:
            raise PublishUnavailable("the event log did not acknowledge in time", retry_after=2)
        for batch in batches:
            failure = batch.acknowledged.exception()
            if failure is not None:
                raise PublishUnavailable(f"the event log refused the events: {failure}", retry_after=2)

    async def close(self, timeout_seconds: float = 5.0) -> None:
        """Hand every batch still being filled to the producer (before it stops and flushes)."""
        senders = [lane.sender for lane in self._lanes.values() if lane.sender is not None]
        if senders:
            await asyncio.wait(senders, timeout=timeout_seconds)

    async def ping(self) -> None:
        await self._producer.client.fetch_all_metadata()


@functools.lru_cache(maxsize=16384)
def _key_hash(key: bytes) -> int:
    """What the Java client (and aiokafka's DefaultPartitioner) hash a key to; cached, as users recur."""
    return int(murmur2(key)) & 0x7FFFFFFF


class _Batch:
    """Records for one partition, and the future that settles when the broker acknowledged them."""

    __slots__ = ("acknowledged", "builder", "nbytes")

    def __init__(self, builder: BatchBuilder) -> None:
        self.builder = builder
        self.nbytes = 0
        """Keys and values appended, as the publisher counts them."""
        self.acknowledged: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def settle(self, delivery: asyncio.Future[object]) -> None:
        if delivery.cancelled():
            self.fail(KafkaError("the delivery was cancelled"))
        elif (failure := delivery.exception()) is not None:
            self.fail(failure)
        elif not self.acknowledged.done():
            self.acknowledged.set_result(None)

    def fail(self, failure: BaseException) -> None:
        if not self.acknowledged.done():
            self.acknowledged.set_exception(failure)
            # Logged once per batch: requests past their deadline no longer wait for it, so this is
            # where a late failure shows (and the future's exception counts as retrieved).
            self.acknowledged.add_done_callback(_log_failure)


def _log_failure(future: asyncio.Future[None]) -> None:
    log.warning("a batch of events was not acknowledged by the event log: %s", future.exception())


class _Lane:
    """One partition: the batch being filled, full ones waiting their turn, and the task handing them
    to the producer in order. The producer takes a partition's next batch only once its previous one
    left for the broker, so while one is away the next fills with every request's events."""

    __slots__ = ("filling", "full", "partition", "publisher", "sender")

    def __init__(self, publisher: KafkaEventPublisher, partition: int) -> None:
        self.publisher = publisher
        self.partition = partition
        self.filling: _Batch | None = None
        self.full: deque[_Batch] = deque()
        self.sender: asyncio.Task[None] | None = None

    def append(self, key: bytes, value: bytes, headers: Headers | None) -> _Batch:
        batch = self.filling
        if batch is None:
            batch = self.filling = _Batch(self.publisher._producer.create_batch())
        if batch.builder.append(timestamp=None, key=key, value=value, headers=headers or []) is None:
            # Full: it goes next, and a new one takes the record (an empty batch takes any record;
            # the broker refuses one over its limits, which fails that batch's requests with a 503).
            self.full.append(batch)
            batch = self.filling = _Batch(self.publisher._producer.create_batch())
            batch.builder.append(timestamp=None, key=key, value=value, headers=headers or [])
        batch.nbytes += len(key) + len(value)
        return batch

    def wake(self) -> None:
        if self.sender is None:
            self.sender = asyncio.create_task(self._hand_over(), name=f"kafka-lane-{self.partition}")

    async def _hand_over(self) -> None:
        producer, topic = self.publisher._producer, self.publisher._topic
        try:
            while True:
                if self.full:
                    batch = self.full.popleft()
                elif self.filling is not None:
                    batch, self.filling = self.filling, None
                else:
                    return
                try:
                    delivery = await producer.send_batch(batch.builder, topic, partition=self.partition)
                except Exception as exc:  # KafkaError, ProducerClosed: its requests answer 503
                    batch.fail(exc)
                    continue
                finally:
                    self.publisher._unsent -= batch.builder.record_count()
                    self.publisher._unsent_bytes -= batch.nbytes
                delivery.add_done_callback(batch.settle)
        finally:
            self.sender = None
