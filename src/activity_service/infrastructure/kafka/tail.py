"""ActivityFeed on Kafka: one reader of the whole topic per API process, shared by every follower.

The tail starts when the first follower comes (and stops a while after the last leaves: no cost while
nobody watches). It reads every partition from its end, decodes each message once, and keeps the last
``buffer_events`` of them in arrival order. A follower is a position in that buffer plus, while it
resumes from a point the buffer no longer (or never) held, a catch-up read of its own from Kafka. Each
entry carries the cursor the follower stands at after it (per partition, the next offset): once a
follower is caught up that is the tail's own cursor, shared by every follower, so that a reader can
render each message once for all of them.

A follower that falls behind the buffer (its client reads too slowly) gets FeedOverflow; so does one
that asks to resume from offsets the log no longer has.

The reader hands on what it fetched at most every PACE_SECONDS: every follower wakes, and its stream
writes, once per hand-over, so the cost is streams x hand-overs rather than streams x fetches. Fetching
as data came, 200 streams at 700 events/s asked for 140,000 writes a second, past what one process
sends: lag p99 7.1 s (make bench, scenario 12).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import OffsetOutOfRangeError

from activity_service.domain.activity import Activity
from activity_service.domain.feed import (
    Cursor,
    FeedBatch,
    FeedEntry,
    FeedFilter,
    FeedOverflow,
    FeedUnavailable,
)
from activity_service.infrastructure.kafka.codec import decode

log = logging.getLogger(__name__)

PACE_SECONDS = 0.1
"""The least time between two hand-overs to the followers while the reader is caught up: it adds at most
this to an event's way to a stream (the target is 1 s at p99)."""
MAX_RECORDS = 2000
MAX_SHARED_BATCHES = 4096

ConsumerFactory = Callable[[], AIOKafkaConsumer]


@dataclass(frozen=True, slots=True)
class _Message:
    sequence: int
    partition: int
    offset: int
    activity: Activity
    cursor: dict[int, int]
    """The tail's cursor once this message is delivered."""


class KafkaTail:
    def __init__(
        self,
        consumer: ConsumerFactory,
        topic: str,
        partitions: Callable[[], Awaitable[Sequence[int]]],
        *,
        buffer_events: int,
        idle_seconds: float,
        max_catch_ups: int = 4,
    ) -> None:
        """``consumer`` makes a consumer of no group (the tail and each catch-up read with their own);
        ``partitions`` tells the topic's partitions."""
        self._new_consumer = consumer
        self._topic = topic
        self._partitions = partitions
        self._buffer: list[_Message] = []
        """In arrival order: ``_buffer[i].sequence == _base + i``."""
        self._base = 0
        self._next_sequence = 0
        self._capacity = buffer_events
        self._idle = idle_seconds
        self._cursor: dict[int, int] = {}
        """The tail's own position: per partition, the next offset it will read."""
        self._first: dict[int, int] = {}
        """Per partition, the first offset the tail holds or will hold (where what it covers starts)."""
        self._arrived = asyncio.Event()
        self._batches: dict[tuple[FeedFilter, int, int], FeedBatch | None] = {}
        """The batches made for caught-up followers since the last hand-over, by filter and range."""
        self._followers = 0
        self._reader: asyncio.Task[None] | None = None
        self._started: asyncio.Future[None] | None = None
        self._stopping: asyncio.Task[None] | None = None
        self._catch_ups = asyncio.Semaphore(max_catch_ups)

    @property
    def followers(self) -> int:
        return self._followers

    @property
    def reading(self) -> bool:
        """Whether the tail reads the topic now (it does only while someone follows, and a while after)."""
        return self._reader is not None

    async def follow(self, matching: FeedFilter, start: Cursor | None) -> AsyncIterator[FeedBatch]:
        self._followers += 1
        try:
            try:
                await self._ensure_running()
            except Exception as exc:  # KafkaError, a timeout: said as a domain error, retried by clients
                raise FeedUnavailable(f"the event log cannot be read: {exc}") from exc
            cursor = dict(self._cursor) if start is None else self._clamped(start)
            yield FeedBatch((), dict(cursor))
            if any(offset < self._first.get(p, 0) for p, offset in cursor.items()):
                async for batch in self._catch_up(matching, cursor):
                    yield batch
            async for batch in self._from_buffer(matching, cursor):
                yield batch
        finally:
            self._followers -= 1
            if self._followers == 0:
                self._stop_later()

    async def _from_buffer(self, matching: FeedFilter, cursor: dict[int, int]) -> AsyncIterator[FeedBatch]:
        """From the buffer, at the first message the cursor has not passed. ``cursor`` is a floor: a
        message below it (delivered before a resume) is skipped. Once the tail's own cursor has passed
        the floor everywhere, the follower's cursor is the tail's and nothing is computed for it."""
        sequence = self._start_of(cursor)
        shared = cursor == self._cursor  # starting where the tail stands: its cursor is the follower's
        while True:
            arrived = self._arrived
            if sequence < self._base:
                raise FeedOverflow("the stream fell too far behind the events it had not sent yet")
            if shared:  # every follower at this point with this filter gets this very batch
                batch = self._shared_batch(matching, sequence)
                sequence = self._base + len(self._buffer)
                if batch is not None:
                    yield batch
                await arrived.wait()
                continue
            entries: list[FeedEntry] = []
            for message in self._buffer[sequence - self._base :]:
                if shared:
                    if matching.matches(message.activity):
                        entries.append(FeedEntry(message.activity, message.cursor, message.sequence))
                    continue
                if message.offset < cursor.get(message.partition, 0):
                    continue  # delivered before this follower resumed
                cursor[message.partition] = message.offset + 1
                shared = all(offset <= message.cursor.get(p, 0) for p, offset in cursor.items())
                if matching.matches(message.activity):
                    where = message.cursor if shared else {**message.cursor, **_ahead(cursor, message.cursor)}
                    entries.append(FeedEntry(message.activity, where, message.sequence if shared else None))
            sequence = self._base + len(self._buffer)
            if entries:
                yield FeedBatch(entries, dict(entries[-1].cursor))
            await arrived.wait()

    def _shared_batch(self, matching: FeedFilter, sequence: int) -> FeedBatch | None:
        """The buffered messages from ``sequence`` on that match, as one batch made once for all the
        caught-up followers that ask (200 streams each building their own was 6 µs a stream and event:
        the live tail's whole cost); None when none match."""
        end = self._base + len(self._buffer)
        key = (matching, sequence, end)
        if key in self._batches:
            return self._batches[key]
        entries = [
            FeedEntry(message.activity, message.cursor, message.sequence)
            for message in self._buffer[sequence - self._base :]
            if matching.matches(message.activity)
        ]
        batch = FeedBatch(entries, dict(entries[-1].cursor)) if entries else None
        if len(self._batches) >= MAX_SHARED_BATCHES:  # as many filters as streams at most; bounded anyway
            self._batches.clear()
        self._batches[key] = batch
        return batch

    async def _catch_up(self, matching: FeedFilter, cursor: dict[int, int]) -> AsyncIterator[FeedBatch]:
        """Reads from Kafka what the follower missed and the buffer does not hold, then hands over."""
        async with self._catch_ups:
            consumer = self._new_consumer()
            await consumer.start()
            try:
                behind = {p for p, o in cursor.items() if o < self._first.get(p, 0)}
                partitions = {p: TopicPartition(self._topic, p) for p in behind}
                consumer.assign(list(partitions.values()))
                for p, tp in partitions.items():
                    consumer.seek(tp, cursor[p])
                while behind:
                    try:
                        fetched = await consumer.getmany(timeout_ms=500, max_records=1000)
                    except OffsetOutOfRangeError:
                        raise FeedOverflow(
                            "the events since that Last-Event-ID are no longer in the log"
                        ) from None
                    entries: list[FeedEntry] = []
                    for tp, records in fetched.items():
                        for record in records:
                            if record.offset >= self._first.get(tp.partition, 0):
                                break  # the buffer holds it: from here on the buffer serves
                            cursor[tp.partition] = record.offset + 1
                            activity = _decoded(record.value)
                            if activity is not None and matching.matches(activity):
                                entries.append(FeedEntry(activity, dict(cursor), None))
                    for p in list(behind):
                        if cursor[p] >= self._first.get(p, 0):
                            behind.discard(p)
                            consumer.pause(partitions[p])
                    if entries:
                        yield FeedBatch(entries, dict(cursor))
            finally:
                await consumer.stop()

    def _start_of(self, cursor: dict[int, int]) -> int:
        """The first buffered message the cursor has not passed."""
        for message in self._buffer:
            if message.offset >= cursor.get(message.partition, 0):
                return message.sequence
        return self._next_sequence

    def _clamped(self, start: Cursor) -> dict[int, int]:
        """A cursor of this topic: unknown partitions dropped, none beyond the end (a forged or foreign
        Last-Event-ID cannot make the follower skip what is still to come)."""
        cursor = dict(self._cursor)
        for partition, offset in start.items():
            if partition in cursor:
                cursor[partition] = max(0, min(offset, cursor[partition]))
        return cursor

    async def _ensure_running(self) -> None:
        if self._stopping is not None:
            self._stopping.cancel()
            self._stopping = None
        if self._reader is None:
            self._started = asyncio.get_running_loop().create_future()
            self._reader = asyncio.create_task(self._read(self._started), name="kafka-tail")
        assert self._started is not None
        await asyncio.shield(self._started)

    async def _read(self, started: asyncio.Future[None]) -> None:
        consumer = self._new_consumer()
        try:
            numbers = sorted(await self._partitions())
            await consumer.start()
            partitions = [TopicPartition(self._topic, p) for p in numbers]
            consumer.assign(partitions)
            await consumer.seek_to_end(*partitions)
            for tp in partitions:
                position = int(await consumer.position(tp))
                self._cursor[tp.partition] = position
                self._first[tp.partition] = position
            started.set_result(None)
            loop = asyncio.get_running_loop()
            while True:
                fetched = await consumer.getmany(timeout_ms=1000, max_records=MAX_RECORDS)
                handed = loop.time()
                self._append(fetched)
                if sum(map(len, fetched.values())) < MAX_RECORDS:  # caught up: let the next ones gather
                    await asyncio.sleep(max(0.0, handed + PACE_SECONDS - loop.time()))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not started.done():
                started.set_exception(exc)
            log.warning("the live tail stopped: %s: %s", type(exc).__name__, exc)
        finally:
            self._reader = None
            self._reset()
            with contextlib.suppress(Exception):
                await consumer.stop()

    def _append(self, fetched: dict[Any, list[Any]]) -> None:
        if not any(fetched.values()):
            return
        for tp, records in fetched.items():
            for record in records:
                self._cursor[tp.partition] = record.offset + 1
                activity = _decoded(record.value)
                if activity is None:
                    continue
                message = _Message(
                    self._next_sequence, tp.partition, record.offset, activity, dict(self._cursor)
                )
                self._buffer.append(message)
                self._next_sequence += 1
        if len(self._buffer) > 2 * self._capacity:  # evicted by halves: amortised O(1) a message
            drop = len(self._buffer) - self._capacity
            for evicted in self._buffer[:drop]:
                self._first[evicted.partition] = evicted.offset + 1
            del self._buffer[:drop]
            self._base += drop
        self._batches.clear()  # their ranges end where the buffer ended: no follower asks for them again
        arrived, self._arrived = self._arrived, asyncio.Event()
        arrived.set()

    def _stop_later(self) -> None:
        async def stop() -> None:
            await asyncio.sleep(self._idle)
            reader = self._reader
            if self._followers == 0 and reader is not None:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

        self._stopping = asyncio.create_task(stop(), name="kafka-tail-stop")

    def _reset(self) -> None:
        """A stopped tail keeps nothing: the next start reads from the end again. Followers still
        waiting (there are none when it stops on purpose) are woken and find they fell behind."""
        self._base = self._next_sequence
        self._buffer.clear()
        self._cursor.clear()
        self._first.clear()
        self._batches.clear()
        arrived, self._arrived = self._arrived, asyncio.Event()
        arrived.set()

    async def close(self) -> None:
        for task in (self._stopping, self._reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def _ahead(cursor: dict[int, int], shared: dict[int, int]) -> dict[int, int]:
    return {p: o for p, o in cursor.items() if o > shared.get(p, 0)}


def _decoded(raw: bytes | None) -> Activity | None:
    try:
        return decode(raw)
    except Exception:  # poison: the consumer dead-letters it; a live view just does not show it
        return None
