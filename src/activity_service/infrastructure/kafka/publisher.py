"""EventPublisher on Kafka: one shared idempotent producer, keyed by user, acknowledged by all replicas."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from opentelemetry.trace import SpanKind

from activity_service.domain.activity import Activity
from activity_service.domain.errors import Overloaded, PublishUnavailable
from activity_service.infrastructure.kafka.codec import encode
from activity_service.infrastructure.observability import metrics
from activity_service.infrastructure.observability.tracing import kafka_headers, tracer, tracing_enabled

log = logging.getLogger(__name__)


class KafkaEventPublisher:
    """Publishes activities and returns only once the broker acknowledged all of them.

    Bounds: at most ``max_in_flight`` events wait for an acknowledgment in this process (more are
    refused at once with Overloaded, so memory stays bounded), and each publish has a deadline
    (``timeout_seconds``) after which the caller gets PublishUnavailable, never a silent success.
    """

    def __init__(
        self, producer: AIOKafkaProducer, topic: str, *, timeout_seconds: float, max_in_flight: int
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._timeout = timeout_seconds
        self._max_in_flight = max_in_flight
        self._in_flight = 0
        metrics.EVENTS_IN_FLIGHT.set_function(lambda: self._in_flight)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def publish(self, activities: Sequence[Activity]) -> None:
        count = len(activities)
        if self._in_flight + count > self._max_in_flight:
            metrics.EVENTS_UNAVAILABLE.labels("overloaded").inc(count)
            raise Overloaded(f"{self._in_flight} events already await acknowledgment", retry_after=1)
        self._in_flight += count
        started = time.perf_counter()
        try:
            if tracing_enabled():
                with tracer().start_as_current_span("activities publish", kind=SpanKind.PRODUCER) as span:
                    span.set_attributes(
                        {"messaging.destination.name": self._topic, "messaging.batch.message_count": count}
                    )
                    await self._send_all(activities, kafka_headers())
            else:
                await self._send_all(activities, None)
        except PublishUnavailable:
            metrics.EVENTS_UNAVAILABLE.labels("not_acknowledged").inc(count)
            raise
        finally:
            self._in_flight -= count
        metrics.PUBLISH_DURATION.observe(time.perf_counter() - started)
        metrics.EVENTS_ACCEPTED.inc(count)

    async def _send_all(
        self, activities: Sequence[Activity], headers: list[tuple[str, bytes]] | None
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        deliveries: list[asyncio.Future[object]] = []
        try:
            async with asyncio.timeout_at(deadline):
                for activity in activities:
                    deliveries.append(
                        await self._producer.send(
                            self._topic,
                            value=encode(activity),
                            key=activity.user_id.encode(),
                            headers=headers,
                        )
                    )
            # wait(), not gather(): on timeout the deliveries stay untouched (the producer owns them).
            done, pending = await asyncio.wait(deliveries, timeout=max(0.0, deadline - loop.time()))
        except TimeoutError:
            _forget(deliveries)
            raise PublishUnavailable(
                "the event log did not accept the events in time", retry_after=2
            ) from None
        except KafkaError as exc:
            _forget(deliveries)
            raise PublishUnavailable(f"the event log refused the events: {exc}", retry_after=2) from exc
        if pending:
            _forget(deliveries)
            raise PublishUnavailable("the event log did not acknowledge in time", retry_after=2)
        failures = [f.exception() for f in done if f.exception() is not None]
        if failures:
            raise PublishUnavailable(f"the event log refused the events: {failures[0]}", retry_after=2)

    async def ping(self) -> None:
        await self._producer.client.fetch_all_metadata()


def _forget(deliveries: Sequence[asyncio.Future[object]]) -> None:
    """Deliveries we stopped waiting for may still fail later; read their outcome so none goes unlogged."""

    def _log_outcome(future: asyncio.Future[object]) -> None:
        if not future.cancelled() and future.exception() is not None:
            log.warning("a publish that timed out later failed: %s", future.exception())

    for future in deliveries:
        future.add_done_callback(_log_outcome)
