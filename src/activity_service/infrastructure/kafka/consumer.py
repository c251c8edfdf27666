"""The consumer loop: read a batch, store it, and only then commit the offsets past it."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeAlias, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import ConsumerRecord

from activity_service.domain.activity import Activity
from activity_service.domain.delivery import DeadLetter
from activity_service.domain.ports import DeadLetterLog, ProgressLog, StoreOutcome
from activity_service.infrastructure.kafka.codec import decode, event_id_of
from activity_service.infrastructure.kafka.dead_letters import KafkaDeadLetters
from activity_service.infrastructure.kafka.progress import ProgressTracker
from activity_service.infrastructure.observability.consumer import (
    BatchTelemetry,
    dead_lettered,
    retried,
)

log = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord  # aiokafka ships no type hints
Store = Callable[[Sequence[Activity]], Awaitable[StoreOutcome]]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    initial_seconds: float
    max_seconds: float

    def delay(self, attempt: int) -> float:
        """Exponential with full jitter, so many consumers retrying do not hit the store in step."""
        return random.uniform(0, min(self.max_seconds, self.initial_seconds * 2**attempt))


@dataclass(frozen=True, slots=True)
class BatchReport:
    records: int
    inserted: int
    duplicates: int
    dead_lettered: int


@dataclass(frozen=True, slots=True)
class DeliveryRecords:
    """Where the loop writes down dead letters (both copies) and its persist progress."""

    topic: KafkaDeadLetters
    log: DeadLetterLog
    progress: ProgressLog


class KafkaActivityConsumer:
    """At-least-once consumption with idempotent storage.

    For each batch from ``getmany``: decode every record (a record that cannot be decoded or breaks an
    invariant is dead-lettered), store the rest with ``store`` (retrying with backoff for as long as the
    outcome is unknown; events the store refuses for good are dead-lettered), commit the next offset of
    every partition in the batch, then record the progress. Nothing is committed past an event that is
    neither stored nor dead-lettered. A rebalance waits for the batch in hand to be committed first.
    """

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        store: Store,
        delivery: DeliveryRecords,
        *,
        max_records: int,
        fetch_timeout_ms: int,
        backoff: Backoff,
        progress_interval_seconds: float,
        on_batch: Callable[[BatchReport], None] | None = None,
    ) -> None:
        self._consumer = consumer
        self._store = store
        self._delivery = delivery
        self._max_records = max_records
        self._fetch_timeout_ms = fetch_timeout_ms
        self._backoff = backoff
        self._progress_interval = progress_interval_seconds
        self._on_batch = on_batch
        self._batch_lock = asyncio.Lock()
        self._progress = ProgressTracker(consumer, delivery.progress)
        self._last_progress = 0.0

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        """Pass to ``subscribe``: revoking partitions waits until the batch in hand is committed."""
        return _FinishBatchFirst(self._batch_lock)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; the batch in hand is finished and committed first."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            batches = await self._consumer.getmany(
                timeout_ms=self._fetch_timeout_ms, max_records=self._max_records
            )
            async with self._batch_lock:
                if not batches:
                    if loop.time() - self._last_progress >= self._progress_interval:
                        self._last_progress = loop.time()
                        await self._progress.when_idle()
                    continue
                report = await self._process(batches, stop)
                if report is None:  # stopped while the store was still failing: commit nothing
                    return
                await self._commit({tp: records[-1].offset + 1 for tp, records in batches.items() if records})
                self._last_progress = loop.time()
                await self._progress.after_batch(batches)
            if self._on_batch is not None:
                self._on_batch(report)

    async def _process(
        self, batches: dict[TopicPartition, list[Record]], stop: asyncio.Event
    ) -> BatchReport | None:
        records = [record for batch in batches.values() for record in batch]
        with BatchTelemetry(records) as telemetry:
            return await self._settle(records, telemetry, stop)

    async def _settle(
        self, records: list[Record], telemetry: BatchTelemetry, stop: asyncio.Event
    ) -> BatchReport | None:
        activities: list[Activity] = []
        sources: dict[str, Record] = {}
        dead: list[tuple[Record, str, str]] = []
        for record in records:
            try:
                activity = decode(record.value)
            except Exception as exc:  # decoding is deterministic: no retry can help, so dead-letter it
                dead.append((record, type(exc).__name__, str(exc)))
                continue
            activities.append(activity)
            sources[activity.id] = record
            self._progress.saw(record, activity.received_at)

        async def store() -> StoreOutcome:
            started = time.perf_counter()
            outcome = await self._store(activities)
            telemetry.stored(outcome, time.perf_counter() - started)
            return outcome

        outcome = await self._until_known(store, "store", stop)
        if outcome is None:
            return None
        dead += [
            (sources[event_id], "RejectedByStore", reason) for event_id, reason in outcome.rejected.items()
        ]
        for record, error_type, reason in dead:
            log.warning(
                "dead-lettering %s[%d]@%d (%s): %s",
                record.topic,
                record.partition,
                record.offset,
                error_type,
                reason,
            )
            if await self._until_known(
                partial(self._dead_letter, record, error_type, reason), "dead_letter", stop
            ):
                dead_lettered(error_type)
                continue
            return None
        return BatchReport(
            records=len(records),
            inserted=outcome.inserted,
            duplicates=outcome.duplicates,
            dead_lettered=len(dead),
        )

    async def _dead_letter(self, record: Record, error_type: str, reason: str) -> bool:
        await self._delivery.topic.send(record, error_type, reason)
        source = f"{record.topic}:{record.partition}:{record.offset}"
        letter = DeadLetter(source, event_id_of(record.value), error_type, reason[:1000], datetime.now(UTC))
        await self._delivery.log.add(letter)
        return True

    async def _until_known(
        self, operation: Callable[[], Awaitable[T]], what: str, stop: asyncio.Event
    ) -> T | None:
        """Retry ``operation`` with backoff until it succeeds; None if ``stop`` is set before it does."""
        attempt = 0
        while True:
            try:
                return await operation()
            except Exception as exc:  # the outcome is unknown: retry the whole (idempotent) operation
                delay = self._backoff.delay(attempt)
                attempt += 1
                retried(what)
                log.warning(
                    "%s failed (attempt %d), retrying in %.2fs: %s: %s",
                    what,
                    attempt,
                    delay,
                    type(exc).__name__,
                    exc,
                )
            if stop.is_set():
                log.warning("stopping while %s still fails; the batch stays uncommitted", what)
                return None
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                pass

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The partitions moved to another consumer during the batch. The events are stored, so the new
            # owner re-reading them only meets duplicates: log and go on rather than crash.
            log.warning(
                "commit refused after a rebalance (events are stored; redelivery is harmless): %s", exc
            )


class _FinishBatchFirst(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, batch_lock: asyncio.Lock) -> None:
        self._batch_lock = batch_lock

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self._batch_lock:  # the loop commits before it lets go of the lock
            log.info("partitions revoked: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("partitions assigned: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))
