"""The consumer loop: read a batch, store it, and only then commit the offsets past it."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError
from aiokafka.structs import ConsumerRecord

from activity_service.domain.activity import Activity
from activity_service.domain.errors import InvalidActivity
from activity_service.domain.ports import StoreOutcome
from activity_service.infrastructure.kafka.codec import UndecodableMessage, decode
from activity_service.infrastructure.kafka.dead_letters import KafkaDeadLetters

log = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord  # aiokafka ships no type hints
Store = Callable[[Sequence[Activity]], Awaitable[StoreOutcome]]


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


class KafkaActivityConsumer:
    """At-least-once consumption with idempotent storage.

    For each batch from ``getmany``: decode every record (a record that cannot be decoded or breaks an
    invariant is dead-lettered), store the rest with ``store`` (retrying with backoff for as long as
    the outcome is unknown; events the store refuses for good are dead-lettered), then commit the next
    offset of every partition in the batch. Nothing is committed past an event that is neither stored
    nor dead-lettered.
    """

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        store: Store,
        dead_letters: KafkaDeadLetters,
        *,
        max_records: int,
        fetch_timeout_ms: int,
        backoff: Backoff,
        on_batch: Callable[[BatchReport], None] | None = None,
    ) -> None:
        self._consumer = consumer
        self._store = store
        self._dead_letters = dead_letters
        self._max_records = max_records
        self._fetch_timeout_ms = fetch_timeout_ms
        self._backoff = backoff
        self._on_batch = on_batch

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; the batch in hand is finished and committed first."""
        while not stop.is_set():
            batches = await self._consumer.getmany(
                timeout_ms=self._fetch_timeout_ms, max_records=self._max_records
            )
            if not batches:
                continue
            report = await self._process(batches, stop)
            if report is None:  # stopped while the store was still failing: commit nothing
                return
            await self._commit({tp: records[-1].offset + 1 for tp, records in batches.items() if records})
            if self._on_batch is not None:
                self._on_batch(report)

    async def _process(
        self, batches: dict[TopicPartition, list[Record]], stop: asyncio.Event
    ) -> BatchReport | None:
        activities: list[Activity] = []
        sources: dict[str, Record] = {}
        dead = 0
        for records in batches.values():
            for record in records:
                try:
                    activity = decode(record.value)
                except (UndecodableMessage, InvalidActivity) as exc:
                    log.warning(
                        "dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc
                    )
                    await self._dead_letters.send(record, type(exc).__name__, str(exc))
                    dead += 1
                    continue
                activities.append(activity)
                sources[activity.id] = record
        outcome = await self._store_until_known(activities, stop)
        if outcome is None:
            return None
        for event_id, reason in outcome.rejected.items():
            log.warning("the store refused event %s for good, dead-lettering it: %s", event_id, reason)
            await self._dead_letters.send(sources[event_id], "RejectedByStore", reason)
        return BatchReport(
            records=sum(len(r) for r in batches.values()),
            inserted=outcome.inserted,
            duplicates=outcome.duplicates,
            dead_lettered=dead + len(outcome.rejected),
        )

    async def _store_until_known(
        self, activities: Sequence[Activity], stop: asyncio.Event
    ) -> StoreOutcome | None:
        attempt = 0
        while True:
            try:
                return await self._store(activities)
            except Exception as exc:  # the outcome is unknown: retry the whole (idempotent) write
                delay = self._backoff.delay(attempt)
                attempt += 1
                log.warning(
                    "storing %d events failed (attempt %d), retrying in %.2fs: %s: %s",
                    len(activities),
                    attempt,
                    delay,
                    type(exc).__name__,
                    exc,
                )
            if stop.is_set():
                log.warning("stopping with %d events not stored; they stay uncommitted", len(activities))
                return None
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                pass

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self._consumer.commit(offsets)
        except CommitFailedError as exc:
            # The partitions moved to another consumer during the batch. The events are stored, so the new
            # owner re-reading them only meets duplicates: log and go on rather than crash.
            log.warning(
                "commit refused after a rebalance (events are stored; redelivery is harmless): %s", exc
            )
