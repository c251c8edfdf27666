"""The consumer loop on Kafka: fetch a batch, decode it, have it settled, and only then commit past it.

What "settled" means (stored, already stored or dead-lettered, retried while unknown) is the application's
policy, PersistActivities; this adapter fetches, decodes, commits and handles rebalances.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import ConsumerRecord

from activity_service.domain.delivery import Received, Settled
from activity_service.domain.ports import ProgressLog
from activity_service.infrastructure.kafka.codec import decode, identity_of
from activity_service.infrastructure.kafka.progress import ProgressTracker
from activity_service.infrastructure.observability.consumer import BatchTelemetry

log = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord  # aiokafka ships no type hints
Settle = Callable[[Sequence[Received], asyncio.Event], Coroutine[Any, Any, Settled | None]]


class KafkaActivityConsumer:
    """At-least-once consumption: nothing is committed past a message that is not settled.

    Each round: **fetch** a batch (``getmany``), **decode** every record into a Received message,
    **settle** it (``settle``: PersistActivities.execute, which stores and dead-letters), then **commit**
    the next offset of every partition in the batch and **record progress**. A rebalance waits for the batch
    in hand to be committed first.
    """

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        settle: Settle,
        progress: ProgressLog,
        *,
        max_records: int,
        fetch_timeout_ms: int,
        progress_interval_seconds: float,
        on_batch: Callable[[Settled], None] | None = None,
    ) -> None:
        self._consumer = consumer
        self._settle = settle
        self._max_records = max_records
        self._fetch_timeout_ms = fetch_timeout_ms
        self._progress_interval = progress_interval_seconds
        self._on_batch = on_batch
        self._batch_lock = asyncio.Lock()
        self._progress = ProgressTracker(consumer, progress)
        self._last_progress = 0.0
        self._committing: asyncio.Task[None] | None = None

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        """Pass to ``subscribe``: revoking partitions waits until the batch in hand is committed."""
        return _FinishBatchFirst(self)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; the batch in hand is settled and committed first.

        The broker and database round trips that do not need to follow each other overlap: while a
        batch is settled, the next one (when already fetched) is decoded, and the previous one's commit
        and progress record complete. A batch is still committed only once it is settled, and only after
        the batch before it.
        """
        loop = asyncio.get_running_loop()
        ahead: _Fetched | None = None
        try:
            while not stop.is_set():
                fetched = ahead if ahead is not None else await self._fetch(self._fetch_timeout_ms)
                ahead = None
                async with self._batch_lock:
                    # Fetched ahead, before a rebalance: what this consumer no longer owns is the new
                    # owner's to read from the last commit. The rest must be settled (its position moved).
                    fetched = fetched.only(self._consumer.assignment())
                    if not fetched.records:
                        await self.finish_commit()
                        if loop.time() - self._last_progress >= self._progress_interval:
                            self._last_progress = loop.time()
                            await self._progress.when_idle()
                        continue
                    settled, ahead = await self._settle_and_fetch_ahead(fetched, stop)
                    if settled is None:  # stopped while the store was still failing: commit nothing
                        return
                    await self.finish_commit()
                    self._progress.saw(fetched.last_received)
                    self._committing = asyncio.create_task(self._commit_and_record(fetched.next_offsets))
                if self._on_batch is not None:
                    self._on_batch(settled)
        finally:
            await self.finish_commit()

    async def finish_commit(self) -> None:
        """Wait for the last settled batch to be committed and its progress recorded."""
        committing, self._committing = self._committing, None
        if committing is not None:
            await committing

    async def _fetch(self, timeout_ms: int) -> _Fetched:
        return _Fetched.decode(
            await self._consumer.getmany(timeout_ms=timeout_ms, max_records=self._max_records)
        )

    async def _settle_and_fetch_ahead(
        self, fetched: _Fetched, stop: asyncio.Event
    ) -> tuple[Settled | None, _Fetched | None]:
        """Settle the batch; meanwhile decode whatever the consumer already has buffered."""
        with BatchTelemetry(fetched.records):
            settling = asyncio.create_task(self._settle(fetched.messages, stop))
            await asyncio.sleep(0)  # let the write go out before decoding (CPU) holds the loop
            try:
                ahead = await self._fetch(timeout_ms=0)
            finally:
                settled = await settling
        return settled, (ahead if ahead.records else None)

    async def _commit_and_record(self, next_offsets: dict[TopicPartition, int]) -> None:
        await self._commit(next_offsets)
        self._last_progress = asyncio.get_running_loop().time()
        await self._progress.after_batch(next_offsets)

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
    """A fetched batch, decoded: the messages to settle, and what to commit once they are."""

    by_partition: dict[TopicPartition, list[Record]]
    records: list[Record]
    messages: list[Received]
    last_received: dict[TopicPartition, datetime]

    @classmethod
    def decode(cls, by_partition: dict[TopicPartition, list[Record]]) -> _Fetched:
        by_partition = {tp: records for tp, records in by_partition.items() if records}
        fetched = cls(by_partition, [], [], {})
        for tp, records in by_partition.items():
            latest: datetime | None = None
            for record in records:
                fetched.records.append(record)
                message = _received(record)
                fetched.messages.append(message)
                activity = message.activity
                if activity is not None and (latest is None or activity.received_at > latest):
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


def _received(record: Record) -> Received:
    try:
        activity = decode(record.value)
    except Exception as exc:  # decoding is deterministic: no retry can help, so it is dead-lettered
        who = identity_of(record.value)
        return Received(
            record.topic,
            record.partition,
            record.offset,
            record.key,
            record.value,
            None,
            type(exc).__name__,
            str(exc),
            who.event_id,
            who.tenant,
            who.user_id,
        )
    return Received(record.topic, record.partition, record.offset, record.key, record.value, activity)


class _FinishBatchFirst(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: KafkaActivityConsumer) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self._loop._batch_lock:  # the batch in hand is settled, then committed
            try:
                await self._loop.finish_commit()
            except Exception as exc:  # its events are stored: the next owner re-reads duplicates only
                log.warning("the last batch was not committed before the rebalance: %s", exc)
            log.info("partitions revoked: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("partitions assigned: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))
