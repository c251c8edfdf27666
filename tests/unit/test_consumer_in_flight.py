"""The consumer loop with batches in flight, in-process against a fake broker client: writes overlap,
commits never do, and none passes a batch that was not settled."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from activity_service.domain.activity import Activity
from activity_service.domain.delivery import PartitionProgress, Received, Settled
from activity_service.infrastructure.kafka.codec import encode
from activity_service.infrastructure.kafka.consumer import KafkaActivityConsumer, _Fetched


def tp(partition: int) -> TopicPartition:
    return TopicPartition("activities", partition)


def record(partition: int, offset: int) -> Any:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    value = encode(Activity.record(id=f"e{partition}-{offset}", user_id="u", action="a", received_at=at))
    return ConsumerRecord("activities", partition, offset, 0, 0, b"k", value, None, 1, len(value), ())


class FakeConsumer:
    """Hands out the batches it was given (partition, offsets), each to the first getmany that asks for
    its partition (or for all), in order; records every commit."""

    def __init__(self, batches: list[tuple[int, list[int]]]) -> None:
        self._batches = [(tp(p), [record(p, o) for o in offsets]) for p, offsets in batches]
        self._assigned = {tp(p) for p, _ in batches}
        self.commits: list[dict[int, int]] = []

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[Any]]:
        for i, (where, records) in enumerate(self._batches):
            if not partitions or where in partitions:
                del self._batches[i]
                return {where: records}
        await asyncio.sleep(min(timeout_ms, 10) / 1000)
        return {}

    def assignment(self) -> set[TopicPartition]:
        return self._assigned

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append({t.partition: o for t, o in offsets.items()})

    def highwater(self, tp: TopicPartition) -> int | None:
        return None

    async def position(self, tp: TopicPartition) -> int:
        return 0


class NoProgress:
    async def record(self, progress: Sequence[PartitionProgress]) -> None:
        pass

    async def read(self, topic: str) -> Sequence[PartitionProgress]:
        return []


class Writes:
    """A settle whose writes finish only when the test says so (by the first offset of the batch)."""

    def __init__(self) -> None:
        self.release: dict[tuple[int, int], asyncio.Event] = {}
        self.outcome: dict[tuple[int, int], bool] = {}
        self.running = 0
        self.most_at_once = 0
        self.started: list[tuple[int, int]] = []
        self.settle_then: dict[tuple[int, int], Any] = {}
        """What a write does once released, instead of returning (e.g. raise)."""

    async def settle(self, batch: Sequence[Received], stop: asyncio.Event) -> Settled | None:
        first = (batch[0].partition, batch[0].offset)
        self.started.append(first)
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await self.release.setdefault(first, asyncio.Event()).wait()
            if first in self.settle_then:
                await self.settle_then[first]()
        finally:
            self.running -= 1
        if not self.outcome.get(first, True):
            return None  # as PersistActivities does when stopped while the store still fails
        return Settled(records=len(batch), inserted=len(batch), duplicates=0, dead_lettered=0)

    def finish(self, first: tuple[int, int], settled: bool = True) -> None:
        self.outcome[first] = settled
        self.release.setdefault(first, asyncio.Event()).set()


def loop_of(consumer: FakeConsumer, writes: Writes, in_flight: int) -> KafkaActivityConsumer:
    return KafkaActivityConsumer(
        consumer,  # type: ignore[arg-type]
        writes.settle,
        NoProgress(),
        max_records=500,
        fetch_timeout_ms=10,
        progress_interval_seconds=60,
        batches_in_flight=in_flight,
    )


async def until(condition: Any) -> None:
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110 (polls the loop's state; nothing to wait on)
            await asyncio.sleep(0.001)


async def test_batches_of_two_partitions_are_written_at_once_and_committed_in_order() -> None:
    consumer, writes, stop = FakeConsumer([(0, [0, 1]), (1, [0, 1, 2]), (0, [2])]), Writes(), asyncio.Event()
    running = asyncio.create_task(loop_of(consumer, writes, 2).run(stop))
    await until(lambda: writes.started == [(0, 0), (1, 0)])
    assert writes.most_at_once == 2
    writes.finish((1, 0))  # the second batch is stored first: nothing may be committed past the first
    await asyncio.sleep(0.05)
    assert consumer.commits == [] and len(writes.started) == 2
    writes.finish((0, 0))
    await until(lambda: consumer.commits == [{0: 2}, {1: 3}] and writes.started[-1] == (0, 2))
    writes.finish((0, 2))
    await until(lambda: consumer.commits == [{0: 2}, {1: 3}, {0: 3}])
    stop.set()
    await running


async def test_two_batches_of_one_partition_are_written_one_after_the_other() -> None:
    consumer, writes, stop = FakeConsumer([(0, [0]), (0, [1]), (1, [0])]), Writes(), asyncio.Event()
    running = asyncio.create_task(loop_of(consumer, writes, 3).run(stop))  # room for all three
    await until(lambda: writes.started == [(0, 0), (1, 0)])  # partition 1's batch goes past the second
    await asyncio.sleep(0.05)
    assert writes.started == [(0, 0), (1, 0)]
    writes.finish((0, 0))
    await until(lambda: writes.started == [(0, 0), (1, 0), (0, 1)])
    writes.finish((1, 0))
    writes.finish((0, 1))
    await until(lambda: consumer.commits == [{0: 1}, {1: 1}, {0: 2}])
    stop.set()
    await running


async def test_a_batch_left_unsettled_stops_every_later_commit() -> None:
    consumer, writes, stop = FakeConsumer([(0, [0, 1]), (1, [0])]), Writes(), asyncio.Event()
    running = asyncio.create_task(loop_of(consumer, writes, 2).run(stop))
    await until(lambda: writes.started == [(0, 0), (1, 0)])
    writes.finish((1, 0))
    stop.set()
    writes.finish((0, 0), settled=False)  # stopped while its write still failed
    await running
    assert consumer.commits == []


async def test_stopping_settles_and_commits_the_batches_in_flight() -> None:
    consumer, writes, stop = FakeConsumer([(0, [0]), (1, [0])]), Writes(), asyncio.Event()
    running = asyncio.create_task(loop_of(consumer, writes, 2).run(stop))
    await until(lambda: writes.started == [(0, 0), (1, 0)])
    stop.set()
    writes.finish((1, 0))
    writes.finish((0, 0))
    await running
    assert consumer.commits == [{0: 1}, {1: 1}]


async def test_one_in_flight_writes_one_batch_at_a_time() -> None:
    consumer, writes, stop = FakeConsumer([(0, [0]), (1, [0]), (2, [0])]), Writes(), asyncio.Event()
    running = asyncio.create_task(loop_of(consumer, writes, 1).run(stop))
    for partition in (0, 1, 2):
        await until(lambda partition=partition: writes.started[-1:] == [(partition, 0)])
        await asyncio.sleep(0.02)
        assert writes.running == 1
        writes.finish((partition, 0))
    await until(lambda: consumer.commits == [{0: 1}, {1: 1}, {2: 1}])
    stop.set()
    await running
    assert writes.most_at_once == 1


class Crash(BaseException):
    """Stands for a crash inside a write: not an Exception, so nothing retries it."""


async def test_a_write_that_crashes_ends_the_loop_commits_nothing_and_unwinds_the_other() -> None:
    consumer, writes, stop = FakeConsumer([(0, [0]), (1, [0])]), Writes(), asyncio.Event()
    still_running: list[int] = []

    async def run() -> None:
        try:
            await loop_of(consumer, writes, 2).run(stop)
        finally:  # as the loop returns, before anything else runs
            still_running.append(writes.running)

    running = asyncio.create_task(run())
    await until(lambda: writes.started == [(0, 0), (1, 0)])

    async def crash() -> None:
        raise Crash

    writes.settle_then[(0, 0)] = crash  # the oldest write crashes once released
    writes.finish((0, 0))
    with pytest.raises(Crash):
        await running
    assert consumer.commits == []
    assert still_running == [0], "the other write was left running as the loop ended"


class OneFetchHoldsAll(FakeConsumer):
    """As the broker's client does when the topic is backed up: one getmany returns records of every
    partition it asks for, up to max_records in all, each partition's in offset order."""

    def __init__(self, backlog: dict[int, int]) -> None:
        super().__init__([(p, list(range(n))) for p, n in backlog.items()])

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[Any]]:
        got: dict[TopicPartition, list[Any]] = {}
        for where, records in self._batches:
            if (not partitions or where in partitions) and records and max_records > 0:
                got[where], records[:] = records[:max_records], records[max_records:]
                max_records -= len(got[where])
        if not got:
            await asyncio.sleep(min(timeout_ms, 10) / 1000)
        return got


async def test_a_fetch_holding_several_partitions_is_split_into_batches_written_at_once() -> None:
    """Written as one batch, a fetch holding records of every partition leaves none free for a second
    batch beside it: nothing would overlap."""
    consumer, writes, stop = OneFetchHoldsAll({0: 300, 1: 300}), Writes(), asyncio.Event()
    running = asyncio.create_task(loop_of(consumer, writes, 2).run(stop))
    await until(lambda: len(writes.started) == 2)  # one fetch: 300 of partition 0, 200 of partition 1
    assert sorted(writes.started) == [(0, 0), (1, 0)] and writes.most_at_once == 2
    writes.finish((1, 0))
    await asyncio.sleep(0.05)
    assert consumer.commits == [], "committed past a batch still in flight"
    writes.finish((0, 0))
    await until(lambda: consumer.commits[:2] == [{0: 300}, {1: 200}])
    await until(lambda: (1, 200) in writes.started)
    writes.finish((1, 200))
    await until(lambda: len(consumer.commits) == 3)
    stop.set()
    await running


async def test_the_batch_decoded_ahead_comes_from_a_free_partition_and_starts_with_the_next_slot() -> None:
    consumer, writes, stop = OneFetchHoldsAll({0: 300, 1: 300, 2: 300}), Writes(), asyncio.Event()
    running = asyncio.create_task(loop_of(consumer, writes, 2).run(stop))
    await until(lambda: len(writes.started) == 2)  # partition 0's 300 and 200 of partition 1's
    await asyncio.sleep(0.05)  # the next fetch is decoded ahead meanwhile
    writes.finish((0, 0))
    await until(lambda: len(writes.started) == 3)
    assert writes.started[2] == (2, 0), "the batch decoded ahead held a partition still in flight"
    assert writes.running == 2
    for first in [(1, 0), (2, 0)]:
        writes.finish(first)
    await until(lambda: (1, 200) in writes.started)
    writes.finish((1, 200))
    await until(lambda: sum(len(c) for c in consumer.commits) == 4)
    stop.set()
    await running


def _fetched(backlog: dict[int, int]) -> _Fetched:
    return _Fetched.decode({tp(p): [record(p, o) for o in range(n)] for p, n in backlog.items()})


@pytest.mark.parametrize(
    ("backlog", "parts", "max_records"),
    [
        ({0: 300, 1: 300, 2: 200, 3: 200}, 2, 500),
        ({0: 900, 1: 100}, 2, 500),  # one partition's records span consecutive batches
        ({0: 10, 1: 10, 2: 10}, 4, 500),  # more room than partitions
        ({0: 700}, 1, 500),
        ({0: 3, 1: 4}, 1, 500),  # one in flight: the fetch is the batch
    ],
)
def test_split_batches_hold_every_record_once_in_order_and_fit(
    backlog: dict[int, int], parts: int, max_records: int
) -> None:
    batches = _fetched(backlog).split(parts, max_records)
    assert all(0 < len(b.records) <= max_records for b in batches)
    for p, n in backlog.items():
        offsets = [r.offset for b in batches for r in b.by_partition.get(tp(p), [])]
        assert offsets == list(range(n)), "a record lost, repeated or out of its partition's order"
        assert [m.offset for b in batches for m in b.messages if m.partition == p] == offsets
    for b in batches:
        assert [(m.partition, m.offset) for m in b.messages] == [(r.partition, r.offset) for r in b.records]
        assert set(b.last_received) == set(b.by_partition)
    whole = {tp(p) for p in backlog}
    if parts > 1 and len(backlog) > 1:
        assert len(batches) >= 2 and all(set(b.by_partition) != whole for b in batches)


async def test_a_fetch_decoded_across_a_rebalance_is_dropped_not_written() -> None:
    """Decoding yields to the loop, so a rebalance can settle and commit everything in hand while a
    fetch is still being decoded: that fetch belongs to before it, and every partition the consumer is
    given again is read from its last commit. Writing it would write those records twice (or beside
    their new owner)."""
    consumer, writes, stop = OneFetchHoldsAll({0: 120}), Writes(), asyncio.Event()
    loop = loop_of(consumer, writes, 2)
    listener = loop.rebalance_listener()
    fetch = consumer.getmany

    async def fetch_then_rebalance(*partitions: TopicPartition, timeout_ms: int, max_records: int) -> Any:
        got = await fetch(*partitions, timeout_ms=timeout_ms, max_records=max_records)
        if got:  # the revocation runs at the decoding's first turn of the loop
            asyncio.get_running_loop().call_soon(asyncio.ensure_future, listener.on_partitions_revoked(set()))
        return got

    consumer.getmany = fetch_then_rebalance  # type: ignore[method-assign]
    running = asyncio.create_task(loop.run(stop))
    await asyncio.sleep(0.1)
    assert writes.started == [], "a fetch from before the rebalance was written after it"
    stop.set()
    await running


async def test_a_batch_that_fails_while_a_rebalance_waits_ends_the_loop_committing_nothing_after() -> None:
    """The revocation cannot raise (the group must go on rebalancing), so it hands the failure to the
    loop: the batches after the failed one are never committed."""
    consumer = FakeConsumer([(0, [0]), (1, [0]), (2, list(range(120)))])
    writes, stop = Writes(), asyncio.Event()
    loop = loop_of(consumer, writes, 2)
    revoking: list[asyncio.Future[None]] = []
    fetch = consumer.getmany

    async def fail() -> None:
        raise RuntimeError("the write failed in a way no retry covers")

    async def fetch_then_rebalance(*partitions: TopicPartition, timeout_ms: int, max_records: int) -> Any:
        got = await fetch(*partitions, timeout_ms=timeout_ms, max_records=max_records)
        if tp(2) in got:  # both batches are in flight; the revocation runs while this one is decoded
            writes.settle_then[(0, 0)] = fail
            writes.finish((0, 0))
            writes.finish((1, 0))
            revoking.append(asyncio.ensure_future(loop.rebalance_listener().on_partitions_revoked(set())))
        return got

    consumer.getmany = fetch_then_rebalance  # type: ignore[method-assign]
    async with asyncio.timeout(2):
        with pytest.raises(RuntimeError):
            await loop.run(stop)
    await revoking[0]  # it logged and returned
    assert consumer.commits == [], "committed past a batch that failed"
    assert (2, 0) not in writes.started


async def test_what_the_client_hands_out_after_a_rebalance_it_waited_through_is_written() -> None:
    """A rebalance while getmany waits is the client's to handle: what it hands out then is what the
    new assignment reads, from its last commit, and the client's position is past it. Dropping it
    would lose it (the fault suite's restarted consumers did: events missing)."""
    consumer, writes, stop = OneFetchHoldsAll({0: 3}), Writes(), asyncio.Event()
    loop = loop_of(consumer, writes, 2)
    listener = loop.rebalance_listener()
    fetch = consumer.getmany

    async def rebalance_then_fetch(*partitions: TopicPartition, timeout_ms: int, max_records: int) -> Any:
        await listener.on_partitions_revoked(set())  # the group rebalanced while this call waited
        return await fetch(*partitions, timeout_ms=timeout_ms, max_records=max_records)

    consumer.getmany = rebalance_then_fetch  # type: ignore[method-assign]
    running = asyncio.create_task(loop.run(stop))
    await until(lambda: writes.started == [(0, 0)])
    writes.finish((0, 0))
    await until(lambda: consumer.commits == [{0: 3}])
    stop.set()
    await running
