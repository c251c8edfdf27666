"""The consumer loop on Kafka: fetch a batch, decode it, have it settled, and only then commit past it.

What "settled" means (stored, already stored or dead-lettered, retried while unknown) is the application's
policy, PersistActivities; this adapter fetches, decodes, commits and handles rebalances.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Iterator, Sequence
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
DECODE_SLICE = 50
"""Records decoded between two turns of the event loop (about 1 ms of CPU)."""
Settle = Callable[[Sequence[Received], asyncio.Event], Coroutine[Any, Any, Settled | None]]


class KafkaActivityConsumer:
    """At-least-once consumption: nothing is committed past a message that is not settled.

    Each round: **fetch** a batch (``getmany``), **decode** every record into a Received message,
    **settle** it (``settle``: PersistActivities.execute, which stores and dead-letters), then **commit**
    the next offset of every partition in the batch and **record progress**. Up to ``batches_in_flight``
    batches are settled at once (their writes overlap; each is one statement), never two holding records
    of the same partition: a batch is fetched only from partitions no batch in flight holds, so each
    partition is still written in offset order (MongoDB's counts rely on it). They are committed in the
    order they were fetched, each only once it and every batch before it is settled, so a commit never
    passes an unsettled record. A rebalance waits for every batch in hand to be committed first.
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
        batches_in_flight: int = 1,
        on_batch: Callable[[Settled], None] | None = None,
    ) -> None:
        self._consumer = consumer
        self._settle = settle
        self._max_records = max_records
        self._fetch_timeout_ms = fetch_timeout_ms
        self._progress_interval = progress_interval_seconds
        self._on_batch = on_batch
        self._depth = batches_in_flight
        self._in_flight: deque[tuple[_Fetched, asyncio.Task[Settled | None]]] = deque()
        self._stopped_unsettled = False
        self._batch_lock = asyncio.Lock()
        self._progress = ProgressTracker(consumer, progress)
        self._last_progress = 0.0
        self._committing: asyncio.Task[None] | None = None
        self._rebalances = 0
        self._failed: Exception | None = None
        """A batch that failed while a rebalance waited for it: nothing may be committed past it."""

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        """Pass to ``subscribe``: revoking partitions waits until the batch in hand is committed."""
        return _FinishBatchFirst(self)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; the batches in hand are settled and committed first.

        The broker and database round trips that do not need to follow each other overlap: while the
        batches in flight are settled, the next one (when already fetched) is decoded, and the last
        settled one's commit and progress record complete.
        """
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set() and not self._stopped_unsettled:
                # While batches are in flight, only what the consumer already holds is decoded.
                timeout = 0 if self._in_flight else self._fetch_timeout_ms
                fetched, rebalances = await self._fetch(timeout, self._free_partitions())
                async with self._batch_lock:
                    if self._failed is not None:
                        raise self._failed
                    if self._rebalances != rebalances:
                        # Handed out before a rebalance that ran while it was decoded (decoding yields to
                        # the loop): every partition this consumer gets now is read again from its last
                        # commit (a new assignment has no position), so the fetch is dropped.
                        continue
                    fetched = fetched.only(self._consumer.assignment())
                    if fetched.records:
                        for batch in fetched.split(self._depth, self._max_records):
                            while self._must_wait(batch):
                                await self._settle_oldest()
                            if self._stopped_unsettled:
                                break  # fetched, never settled nor committed: the next owner reads it again
                            self._in_flight.append((batch, asyncio.create_task(self._settled(batch, stop))))
                            await asyncio.sleep(0)  # the write goes out before decoding (CPU) holds the loop
                        if self._stopped_unsettled:
                            break
                    elif self._in_flight:
                        await self._settle_oldest()
                    else:
                        await self.finish_commit()
                        if loop.time() - self._last_progress >= self._progress_interval:
                            self._last_progress = loop.time()
                            await self._progress.when_idle()
            async with self._batch_lock:
                await self.finish_batches()
        finally:
            left = [settling for _, settling in self._in_flight]  # only after an error: none is committed
            self._in_flight.clear()
            for settling in left:
                settling.cancel()
            await asyncio.gather(*left, return_exceptions=True)  # unwound before the store closes
            await self.finish_commit()

    async def finish_batches(self) -> None:
        """Settle and commit every batch in flight, in order (the caller holds the batch lock)."""
        while self._in_flight:
            await self._settle_oldest()
        await self.finish_commit()

    async def finish_commit(self) -> None:
        """Wait for the last settled batch to be committed and its progress recorded."""
        committing, self._committing = self._committing, None
        if committing is not None:
            await committing

    async def _settled(self, fetched: _Fetched, stop: asyncio.Event) -> Settled | None:
        with BatchTelemetry(fetched.records):
            return await self._settle(fetched.messages, stop)

    async def _settle_oldest(self) -> None:
        """Wait for the oldest batch in flight to be settled, then commit past it (after the one before).
        A batch left unsettled (stopped while the store was failing) stops every later commit."""
        fetched, settling = self._in_flight[0]
        try:
            settled = await settling
        finally:
            if self._in_flight and self._in_flight[0][1] is settling:  # not cleared by run's error path
                self._in_flight.popleft()
        if settled is None or self._stopped_unsettled:
            self._stopped_unsettled = True
            return
        await self.finish_commit()
        self._progress.saw(fetched.last_received)
        self._committing = asyncio.create_task(self._commit_and_record(fetched.next_offsets))
        if self._on_batch is not None:
            self._on_batch(settled)

    def _busy(self) -> set[TopicPartition]:
        return {tp for fetched, _ in self._in_flight for tp in fetched.by_partition}

    def _free_partitions(self) -> tuple[TopicPartition, ...]:
        """Where the next batch comes from: the partitions no batch in flight holds, when there are
        some; else every assigned one (() for getmany). Also while no batch may start yet: the batch
        decoded ahead then starts once the oldest batch in flight is settled, not only once every one
        holding its partitions is (a backed-up topic's fetch holds one partition: measured on a drain,
        two batches were in flight 56% of the time when decoding ahead from any partition, 74% so)."""
        if not self._in_flight:
            return ()
        busy = self._busy()
        return tuple(tp for tp in self._consumer.assignment() if tp not in busy)

    def _must_wait(self, fetched: _Fetched) -> bool:
        """Whether ``fetched`` must wait for the oldest batch in flight: no room, or it holds records of
        a partition a batch in flight holds (each partition is written in offset order)."""
        if not self._in_flight or self._stopped_unsettled:
            return False
        return len(self._in_flight) >= self._depth or not self._busy().isdisjoint(fetched.by_partition)

    async def _fetch(
        self, timeout_ms: int, partitions: tuple[TopicPartition, ...] = ()
    ) -> tuple[_Fetched, int]:
        """The next batch, decoded a slice at a time: decoding is CPU, and meanwhile the batches in
        flight wait on the event loop for each answer of the database (held for a whole batch's
        decoding, a batch's first statement took 10 ms instead of 1 and the drain ran at 2/3 speed).
        With it, how many rebalances had begun when the records were handed out: a rebalance while
        ``getmany`` waits is the client's to handle (it hands out only what the new assignment reads),
        one during the decoding is the caller's."""
        fetched = _Fetched({}, [], [], {})
        by_partition = await self._consumer.getmany(
            *partitions, timeout_ms=timeout_ms, max_records=self._max_records
        )
        rebalances = self._rebalances
        for tp, records in by_partition.items():
            for start in range(0, len(records), DECODE_SLICE):
                if start or fetched.records:
                    await asyncio.sleep(0)
                for record in records[start : start + DECODE_SLICE]:
                    fetched._add(tp, record, _received(record))
        return fetched, rebalances

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
        fetched = cls({}, [], [], {})
        for tp, records in by_partition.items():
            for record in records:
                fetched._add(tp, record, _received(record))
        return fetched

    def _add(self, tp: TopicPartition, record: Record, message: Received) -> None:
        """Records are added partition after partition, each in offset order: ``messages`` holds each
        partition's messages in one run, in the order of ``by_partition``."""
        self.by_partition.setdefault(tp, []).append(record)
        self.records.append(record)
        self.messages.append(message)
        if message.activity is not None:
            seen = self.last_received.get(tp)
            if seen is None or message.activity.received_at > seen:
                self.last_received[tp] = message.activity.received_at

    def split(self, parts: int, max_records: int) -> list[_Fetched]:
        """Batches of at most ``max_records``, holding disjoint partitions where they can (up to
        ``parts`` of them, so that many may be written at once), each partition's records in order.
        A partition with more records than fit in one batch spans consecutive batches; those are
        written one after the other (no two batches in flight hold the same partition)."""
        if len(self.records) <= max_records and (parts == 1 or len(self.by_partition) == 1):
            return [self]
        groups: list[list[TopicPartition]] = [[] for _ in range(min(parts, len(self.by_partition)))]
        sizes = [0] * len(groups)
        for tp in sorted(self.by_partition, key=lambda tp: -len(self.by_partition[tp])):
            least = sizes.index(min(sizes))  # the largest partitions first, each to the smallest group
            groups[least].append(tp)
            sizes[least] += len(self.by_partition[tp])
        batches: list[_Fetched] = []
        for group in groups:
            batch = _Fetched({}, [], [], {})
            for tp, record, message in self._each(group):
                if len(batch.records) == max_records:
                    batches.append(batch)
                    batch = _Fetched({}, [], [], {})
                batch._add(tp, record, message)
            batches.append(batch)
        return batches

    def only(self, assigned: set[TopicPartition]) -> _Fetched:
        if all(tp in assigned for tp in self.by_partition):
            return self
        kept = _Fetched({}, [], [], {})
        for tp, record, message in self._each([tp for tp in self.by_partition if tp in assigned]):
            kept._add(tp, record, message)
        return kept

    def _each(
        self, partitions: Sequence[TopicPartition]
    ) -> Iterator[tuple[TopicPartition, Record, Received]]:
        """The records of ``partitions`` with their messages (decoded once), partition after partition."""
        first: dict[TopicPartition, int] = {}  # where each partition's run of messages starts
        start = 0
        for tp, records in self.by_partition.items():
            first[tp], start = start, start + len(records)
        for tp in partitions:
            for i, record in enumerate(self.by_partition[tp]):
                yield tp, record, self.messages[first[tp] + i]

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
        async with self._loop._batch_lock:  # the batches in hand are settled, then committed
            self._loop._rebalances += 1
            try:
                await self._loop.finish_batches()
            except Exception as exc:  # what was not committed, the next owner reads from the last commit
                # The batches after the failed one may be settled, but never committed: the loop ends.
                self._loop._failed = exc
                log.warning("the batches in hand were not all committed before the rebalance: %s", exc)
            log.info("partitions revoked: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("partitions assigned: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))
