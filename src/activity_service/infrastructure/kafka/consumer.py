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
        self._finishing: asyncio.Task[None] | None = None

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        """Pass to ``subscribe``: revoking partitions waits until the batch in hand is committed."""
        return _FinishBatchFirst(self)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; the batch in hand is finished and committed first.

        The broker and database round trips that do not need to follow each other overlap: while a
        batch is written, the next one (when already fetched) is decoded, and the previous one's
        commit and progress record complete. A batch is still committed only once it is stored, and
        only after the batch before it.
        """
        loop = asyncio.get_running_loop()
        ahead: _Fetched | None = None
        try:
            while not stop.is_set():
                if ahead is None:
                    fetched = _Fetched.decode(
                        await self._consumer.getmany(
                            timeout_ms=self._fetch_timeout_ms, max_records=self._max_records
                        )
                    )
                else:
                    fetched, ahead = ahead, None
                async with self._batch_lock:
                    # Fetched ahead, before a rebalance: what this consumer no longer owns is the new
                    # owner's to read from the last commit. The rest must be stored (its position moved).
                    fetched = fetched.only(self._consumer.assignment())
                    if not fetched.records:
                        await self.finish_batch()
                        if loop.time() - self._last_progress >= self._progress_interval:
                            self._last_progress = loop.time()
                            await self._progress.when_idle()
                        continue
                    report, ahead = await self._process(fetched, stop)
                    if report is None:  # stopped while the store was still failing: commit nothing
                        return
                    await self.finish_batch()
                    self._progress.saw(fetched.last_received)
                    self._finishing = asyncio.create_task(self._finish(fetched.next_offsets))
                if self._on_batch is not None:
                    self._on_batch(report)
        finally:
            await self.finish_batch()

    async def finish_batch(self) -> None:
        """Wait for the last stored batch to be committed and its progress recorded."""
        finishing, self._finishing = self._finishing, None
        if finishing is not None:
            await finishing

    async def _finish(self, next_offsets: dict[TopicPartition, int]) -> None:
        await self._commit(next_offsets)
        self._last_progress = asyncio.get_running_loop().time()
        await self._progress.after_batch(next_offsets)

    async def _process(
        self, fetched: _Fetched, stop: asyncio.Event
    ) -> tuple[BatchReport | None, _Fetched | None]:
        """Store the batch; meanwhile fetch and decode whatever the consumer already has buffered."""
        with BatchTelemetry(fetched.records) as telemetry:
            settling = asyncio.create_task(self._settle(fetched, telemetry, stop))
            await asyncio.sleep(0)  # let the write go out before decoding (CPU) holds the loop
            try:
                buffered = await self._consumer.getmany(timeout_ms=0, max_records=self._max_records)
                ahead = _Fetched.decode(buffered) if buffered else None
            finally:
                report = await settling
        return report, ahead

    async def _settle(
        self, fetched: _Fetched, telemetry: BatchTelemetry, stop: asyncio.Event
    ) -> BatchReport | None:
        activities = fetched.activities

        async def store() -> StoreOutcome:
            started = time.perf_counter()
            outcome = await self._store(activities)
            telemetry.stored(outcome, time.perf_counter() - started)
            return outcome

        outcome = await self._until_known(store, "store", stop)
        if outcome is None:
            return None
        sources = {activity.id: record for record, activity in zip(fetched.sources, activities, strict=True)}
        dead = fetched.dead + [
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
            records=len(fetched.records),
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


@dataclass(slots=True)
class _Fetched:
    """A fetched batch, decoded: what to store, what to dead-letter, and what to commit."""

    by_partition: dict[TopicPartition, list[Record]]
    records: list[Record]
    activities: list[Activity]
    sources: list[Record]
    """The record each activity came from (same order)."""
    dead: list[tuple[Record, str, str]]
    last_received: dict[TopicPartition, datetime]

    @classmethod
    def decode(cls, by_partition: dict[TopicPartition, list[Record]]) -> _Fetched:
        by_partition = {tp: records for tp, records in by_partition.items() if records}
        fetched = cls(by_partition, [], [], [], [], {})
        for tp, records in by_partition.items():
            latest: datetime | None = None
            for record in records:
                fetched.records.append(record)
                try:
                    activity = decode(record.value)
                except Exception as exc:  # decoding is deterministic: no retry can help, so dead-letter it
                    fetched.dead.append((record, type(exc).__name__, str(exc)))
                    continue
                fetched.activities.append(activity)
                fetched.sources.append(record)
                if latest is None or activity.received_at > latest:
                    latest = activity.received_at
            if latest is not None:
                fetched.last_received[tp] = latest
        return fetched

    def only(self, assigned: set[TopicPartition]) -> _Fetched:
        if all(tp in assigned for tp in self.by_partition):
            return self
        return _Fetched.decode({tp: r for tp, r in self.by_partition.items() if tp in assigned})

    @property
    def next_offsets(self) -> dict[TopicPartition, int]:
        return {tp: records[-1].offset + 1 for tp, records in self.by_partition.items()}


class _FinishBatchFirst(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: KafkaActivityConsumer) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self._loop._batch_lock:  # the batch in hand is stored, then committed
            try:
                await self._loop.finish_batch()
            except Exception as exc:  # its events are stored: the next owner re-reads duplicates only
                log.warning("the last batch was not committed before the rebalance: %s", exc)
            log.info("partitions revoked: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("partitions assigned: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))
