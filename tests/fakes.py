"""In-memory stand-ins for the domain ports, for unit tests. Each subclasses its Protocol, so a port
method the fake forgot fails loudly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from activity_service.domain.activity import Activity, EventKey
from activity_service.domain.delivery import DeadLetter, LogPosition, PartitionProgress, Received
from activity_service.domain.erasure import Erasure, ErasureStatus, UserKey
from activity_service.domain.errors import PublishUnavailable, QueryTimedOut, StoreUnavailable
from activity_service.domain.feed import ActivityFeed, Cursor, FeedBatch, FeedEntry, FeedFilter, FeedOverflow
from activity_service.domain.ports import (
    ActivityRepository,
    Clock,
    DeadLetterLog,
    DeadLetterTopic,
    ErasureLog,
    EventPublisher,
    IdGenerator,
    ProgressLog,
    StoreOutcome,
)
from activity_service.domain.query import ActivityPage, ActivityQuery
from activity_service.domain.stats import ActivityCounts, BucketCount, CountQuery


class FixedClock(Clock):
    def __init__(self, now: datetime = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


class SequentialIds(IdGenerator):
    def __init__(self) -> None:
        self.issued = 0

    def new_id(self) -> str:
        self.issued += 1
        return f"evt-{self.issued:06d}"


class InMemoryPublisher(EventPublisher):
    """Keeps what was published; ``down`` makes it refuse like an unreachable broker. What it publishes
    also reaches ``feed``, when one is attached (a one-partition log)."""

    def __init__(self) -> None:
        self.published: list[Activity] = []
        self.down = False
        self.feed: InMemoryFeed | None = None

    async def publish(self, activities: Sequence[Activity]) -> None:
        if self.down:
            raise PublishUnavailable("broker down", retry_after=3)
        self.published.extend(activities)
        if self.feed is not None:
            self.feed.append(activities)

    async def ping(self) -> None:
        if self.down:
            raise ConnectionError("broker down")


class InMemoryRepository(ActivityRepository):
    """Events by (tenant, id). ``refuse``: ids it refuses for good. ``failures``: how many next writes
    fail with their outcome unknown (as a lost connection), after which writes succeed. ``down``: every
    read and write fails."""

    def __init__(self) -> None:
        self.documents: dict[EventKey, Activity] = {}
        self.refuse: set[str] = set()
        self.failures = 0
        self.down = False
        self.slow: asyncio.Event | None = None
        """When set, every read waits for it (a costly query in progress)."""
        self.timed_out = False
        """Every read runs past its time limit."""

    def ids(self) -> list[str]:
        """The stored events' ids, sorted (whatever their tenant)."""
        return sorted(event_id for _, event_id in self.documents)

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("the fake store is down")
        if self.timed_out:
            raise QueryTimedOut("the fake read ran past its time limit")

    async def _read(self) -> None:
        self._check()
        if self.slow is not None:
            await self.slow.wait()

    async def add_many(
        self, activities: Sequence[Activity], positions: Sequence[LogPosition] | None = None
    ) -> StoreOutcome:
        self._check()
        if self.failures:
            self.failures -= 1
            raise ConnectionError("connection lost mid-write")
        inserted = duplicates = 0
        rejected, conflicts = {}, []
        for activity in activities:
            stored = self.documents.get(activity.key)
            if activity.id in self.refuse:
                rejected[activity.key] = "refused by the fake"
            elif stored is not None:
                duplicates += 1
                if activity.fingerprint is not None and activity.fingerprint != stored.fingerprint:
                    conflicts.append(activity.key)  # as the stores: also when the stored one has none
            else:
                self.documents[activity.key] = activity
                inserted += 1
        return StoreOutcome(inserted=inserted, duplicates=duplicates, rejected=rejected, conflicts=conflicts)

    async def get(self, tenant: str, activity_id: str) -> Activity | None:
        self._check()
        return self.documents.get((tenant, activity_id))

    async def erase(self, erasure: Erasure) -> int:
        self._check()
        covered = [
            key
            for key, a in self.documents.items()
            if a.key[0] == erasure.tenant
            and a.user_id == erasure.user_id
            and a.received_at < erasure.requested_at
        ]
        for key in covered:
            del self.documents[key]
        return len(covered)

    async def purge_before(self, cutoff: datetime) -> int:
        expired = [i for i, a in self.documents.items() if a.timestamp < cutoff]
        for activity_id in expired:
            del self.documents[activity_id]
        return len(expired)

    async def find(self, query: ActivityQuery) -> ActivityPage:
        await self._read()
        matching = [
            a
            for a in self.documents.values()
            if a.tenant == query.tenant
            and (query.user_id is None or a.user_id == query.user_id)
            and (not query.actions or a.action in query.actions)
            and (query.start is None or a.timestamp >= query.start)
            and (query.end is None or a.timestamp <= query.end)
        ]
        matching.sort(key=lambda a: (a.timestamp, a.id), reverse=True)
        total = len(matching)
        if query.after is not None:
            position = (query.after.timestamp, query.after.id)
            matching = [a for a in matching if (a.timestamp, a.id) < position]
        window = matching[query.skip : query.skip + query.limit + 1]
        capped = query.count_limit is not None and total > query.count_limit
        return ActivityPage(
            items=window[: query.limit],
            total=(query.count_limit if capped else total) if query.count_total else None,
            page=query.page,
            limit=query.limit,
            has_more=len(window) > query.limit,
            total_capped=capped and query.count_total,
        )

    async def ping(self) -> None:
        self._check()


class InMemoryFeed(ActivityFeed):
    """A one-partition log in memory: offsets are positions in ``log``. ``fail`` makes the next follow
    raise it at once (FeedUnavailable); ``overflow`` makes waiting followers overflow."""

    def __init__(self) -> None:
        self.log: list[Activity] = []
        self.fail: Exception | None = None
        self.overflow = False
        self._arrived = asyncio.Event()

    def append(self, activities: Sequence[Activity]) -> None:
        self.log.extend(activities)
        arrived, self._arrived = self._arrived, asyncio.Event()
        arrived.set()

    def push_overflow(self) -> None:
        self.overflow = True
        self.append([])

    async def follow(self, matching: FeedFilter, start: Cursor | None) -> AsyncIterator[FeedBatch]:
        if self.fail is not None:
            raise self.fail
        offset = len(self.log) if start is None else max(0, min(start.get(0, 0), len(self.log)))
        yield FeedBatch((), {0: offset})
        while True:
            arrived = self._arrived
            if self.overflow:
                raise FeedOverflow("the fake fell behind")
            entries = []
            for index in range(offset, len(self.log)):
                if matching.matches(self.log[index]):
                    entries.append(FeedEntry(self.log[index], {0: index + 1}, index))
            offset = len(self.log)
            if entries:
                yield FeedBatch(entries, {0: offset})
            await arrived.wait()


class InMemoryCounts(ActivityCounts):
    """Counts straight from the fake repository's events: exact by construction."""

    def __init__(self, repository: InMemoryRepository) -> None:
        self._repository = repository

    async def count(self, query: CountQuery) -> Sequence[BucketCount]:
        self._repository._check()
        totals: dict[datetime, dict[str, int]] = {}
        for a in self._repository.documents.values():
            if a.tenant != query.tenant:
                continue
            if query.first <= a.timestamp < query.after_last and query.user_id in (None, a.user_id):
                if not query.actions or a.action in query.actions:
                    actions = totals.setdefault(query.interval.floor(a.timestamp), {})
                    actions[a.action] = actions.get(a.action, 0) + 1
        return [BucketCount(start, sum(by.values()), by) for start, by in sorted(totals.items())]


class InMemoryDeadLetterTopic(DeadLetterTopic):
    """Keeps each copy with why it was sent; ``failures``: how many next sends fail."""

    def __init__(self) -> None:
        self.sent: list[tuple[Received, str, str]] = []
        self.failures = 0

    async def send(self, message: Received, error_type: str, reason: str) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker unreachable")
        self.sent.append((message, error_type, reason))


class InMemoryDeadLetterLog(DeadLetterLog):
    def __init__(self) -> None:
        self.letters: dict[str, DeadLetter] = {}

    async def add(self, letter: DeadLetter) -> None:
        self.letters[letter.source] = letter

    async def forget(self, events: Sequence[EventKey]) -> None:
        self.letters = {k: v for k, v in self.letters.items() if (v.tenant, v.event_id) not in events}

    async def forget_user(self, tenant: str, user_id: str, before: datetime) -> int:
        gone = [
            k for k, v in self.letters.items() if (v.tenant, v.user_id) == (tenant, user_id) and v.at < before
        ]
        for key in gone:
            del self.letters[key]
        return len(gone)

    async def error_types(self, tenant: str, event_id: str) -> set[str]:
        return {v.error_type for v in self.letters.values() if (v.tenant, v.event_id) == (tenant, event_id)}


class InMemoryErasureLog(ErasureLog):
    def __init__(self) -> None:
        self.erasures: dict[str, Erasure] = {}
        self.leases: dict[str, datetime] = {}

    async def add(self, erasure: Erasure) -> None:
        self.erasures[erasure.id] = erasure

    async def get(self, tenant: str, erasure_id: str) -> Erasure | None:
        erasure = self.erasures.get(erasure_id)
        return erasure if erasure is not None and erasure.tenant == tenant else None

    async def erased_before(self, users: Collection[UserKey]) -> dict[UserKey, datetime]:
        latest: dict[UserKey, datetime] = {}
        for e in self.erasures.values():
            if e.user in users and (e.user not in latest or e.requested_at > latest[e.user]):
                latest[e.user] = e.requested_at
        return latest

    async def claim(self, now: datetime, lease: timedelta) -> Erasure | None:
        for e in sorted(self.erasures.values(), key=lambda e: e.requested_at):
            held = self.leases.get(e.id)
            if e.status is not ErasureStatus.DONE and (held is None or held <= now):
                self.leases[e.id] = now + lease
                self.erasures[e.id] = replace(e, status=ErasureStatus.RUNNING)
                return replace(self.erasures[e.id], held_until=now + lease)
        return None

    async def record_pass(self, erasure: Erasure, removed: int, now: datetime) -> bool:
        stored = self.erasures[erasure.id]
        holder = self.leases.get(erasure.id) == erasure.held_until
        done = holder and stored.generation == erasure.generation
        if holder:
            del self.leases[erasure.id]
        self.erasures[erasure.id] = replace(
            stored,
            removed=stored.removed + removed,
            status=ErasureStatus.DONE if done else stored.status,
            finished_at=now if done else None,
        )
        return done

    async def raced(self, users: Collection[UserKey]) -> None:
        for e in list(self.erasures.values()):
            if e.user in users:
                self.erasures[e.id] = replace(
                    e, generation=e.generation + 1, status=ErasureStatus.RUNNING, finished_at=None
                )


class InMemoryProgressLog(ProgressLog):
    def __init__(self) -> None:
        self.records: dict[tuple[str, int], PartitionProgress] = {}

    async def record(self, progress: Sequence[PartitionProgress]) -> None:
        for p in progress:
            stored = self.records.get((p.topic, p.partition))
            if stored is None or stored.next_offset <= p.next_offset:
                self.records[(p.topic, p.partition)] = p

    async def read(self, topic: str) -> Sequence[PartitionProgress]:
        return [p for (t, _), p in self.records.items() if t == topic]
