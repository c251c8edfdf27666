"""In-memory stand-ins for the domain ports, for unit tests. Each subclasses its Protocol, so a port
method the fake forgot fails loudly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

from activity_service.domain.activity import Activity
from activity_service.domain.delivery import DeadLetter, LogPosition, PartitionProgress, Received
from activity_service.domain.errors import PublishUnavailable, QueryTimedOut, StoreUnavailable
from activity_service.domain.feed import ActivityFeed, Cursor, FeedBatch, FeedEntry, FeedFilter, FeedOverflow
from activity_service.domain.ports import (
    ActivityRepository,
    Clock,
    DeadLetterLog,
    DeadLetterTopic,
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
    """``refuse``: ids it refuses for good. ``failures``: how many next writes fail with their outcome
    unknown (as a lost connection), after which writes succeed. ``down``: every read and write fails."""

    def __init__(self) -> None:
        self.documents: dict[str, Activity] = {}
        self.refuse: set[str] = set()
        self.failures = 0
        self.down = False
        self.slow: asyncio.Event | None = None
        """When set, every read waits for it (a costly query in progress)."""
        self.timed_out = False
        """Every read runs past its time limit."""

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
        rejected = {}
        for activity in activities:
            if activity.id in self.refuse:
                rejected[activity.id] = "refused by the fake"
            elif activity.id in self.documents:
                duplicates += 1
            else:
                self.documents[activity.id] = activity
                inserted += 1
        return StoreOutcome(inserted=inserted, duplicates=duplicates, rejected=rejected)

    async def get(self, activity_id: str) -> Activity | None:
        self._check()
        return self.documents.get(activity_id)

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
            if (query.user_id is None or a.user_id == query.user_id)
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

    async def forget(self, event_ids: Sequence[str]) -> None:
        self.letters = {k: v for k, v in self.letters.items() if v.event_id not in event_ids}

    async def has_event(self, event_id: str) -> bool:
        return any(letter.event_id == event_id for letter in self.letters.values())


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
