"""Counts over time on MongoDB, kept exact without transactions (FerretDB has none; MongoDB has them only
on replica sets).

One document per bucket and interval (collections ``counts_minute``, ``counts_hour``, ``counts_day``):
``{_id: "tenant/start", tenant, start, total, actions: {action: n}, seen: {"topic:partition": offset}}``.
Storing an event and
counting it are two writes, so a crash between them must neither lose nor double a count:

- Each stored event keeps the log position it was stored from (``src``). A record counts when it stored
  its event now, or when its event is stored and was stored by this very record (its first attempt,
  before a crash). A resend of the same event from elsewhere in the log never counts.
- Each bucket remembers, per log partition, the highest offset applied to it (``seen``), and takes from
  a batch only records past that offset. Partitions are read in offset order, so a redelivered batch,
  a replay or a dead-letter replay adds exactly what is not yet counted.
- A bucket is updated only if its ``seen`` is still what was read (optimistic concurrency): a second
  writer (a replay running beside the consumer) makes the first read again and recompute.

An erasure takes its events out of their buckets one by one (``take_out``): each bucket notes
``gone.<erasure>.<event>`` so that no event is taken out twice, and takes out only an event it counted
(one stored from a position it has ``seen``: an event stored but not yet counted when the consumer
crashed is never counted, since its redelivery is suppressed). The notes go once the events are gone.

Keys in ``actions``, ``seen`` and ``gone`` are escaped (``.``, ``$`` and ``%``), since both servers read
those as paths or operators. Retention removes whole days: events first, then the buckets that lie before
the cut.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, IndexModel, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import ConnectionFailure, DuplicateKeyError, ExecutionTimeout

from activity_service.domain.activity import Activity
from activity_service.domain.delivery import LogPosition
from activity_service.domain.errors import QueryTimedOut, StoreUnavailable
from activity_service.domain.stats import BucketCount, CountQuery, Interval
from activity_service.infrastructure.mongo.compat import UPDATES_PER_COMMAND, ServerQuirks
from activity_service.infrastructure.mongo.documents import SOURCE, Document

log = logging.getLogger(__name__)

COLLECTIONS = {Interval.MINUTE: "counts_minute", Interval.HOUR: "counts_hour", Interval.DAY: "counts_day"}
CACHED_BUCKETS = 4096
ATTEMPTS = 20


@dataclass(frozen=True, slots=True)
class Counted:
    """One record of a batch as counting sees it: the event, where it was read (if known), and whether
    it is the record that stored the event."""

    activity: Activity
    position: LogPosition | None
    stored_it: bool


@dataclass(slots=True)
class _Change:
    tenant: str
    start: datetime
    total: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    highest: dict[str, int] = field(default_factory=dict)
    """Per escaped partition key: the highest offset among this batch's records of this bucket."""
    records: list[tuple[str, int, str]] = field(default_factory=list)
    """(partition key, offset, action) of each counting record with a position."""


class MongoCountKeeper:
    def __init__(
        self,
        activities: AsyncCollection[Document],
        quirks: ServerQuirks,
        *,
        read_timeout_ms: int | None = None,
    ) -> None:
        """``read_timeout_ms``: every count read's maxTimeMS (the server stops it there: QueryTimedOut)."""
        self._read_ms = read_timeout_ms
        self._activities = activities
        self._collections = {interval: activities.database[name] for interval, name in COLLECTIONS.items()}
        self._quirks = quirks
        self._seen: OrderedDict[tuple[Interval, str], dict[str, int]] = OrderedDict()
        """What this process last knew of each bucket's ``seen`` (a cache; updates check it still holds)."""

    async def ensure_indexes(self) -> None:
        for collection in self._collections.values():
            await self._quirks.create_indexes(
                collection, [IndexModel([("tenant", ASCENDING), ("start", ASCENDING)], name="tenant_start")]
            )

    async def add(self, records: Sequence[Counted]) -> None:
        """Counts the records that stored their event, each exactly once (see the module's text)."""
        for interval, collection_changes in _changes(records).items():
            for key, change in collection_changes.items():
                await self._apply(interval, key, change)

    async def _apply(self, interval: Interval, key: str, change: _Change) -> None:
        collection = self._collections[interval]
        for _ in range(ATTEMPTS):
            cached = self._seen.get((interval, key))
            if cached is None:
                document = await collection.find_one({"_id": key}, projection={"seen": 1})
                if document is None:
                    if await self._insert(interval, key, change):
                        return
                    continue
                cached = dict(document.get("seen") or {})
                self._remember(interval, key, cached)
            seen: dict[str, int] = cached
            total, actions = change.total, dict(change.actions)
            for partition, offset, action in change.records:
                if offset <= seen.get(partition, -1):  # counted before (a redelivery, a replay)
                    total -= 1
                    actions[action] -= 1
            new_seen = {p: max(o, seen.get(p, -1)) for p, o in change.highest.items()}
            condition: dict[str, Any] = {"_id": key}
            for partition in new_seen:
                condition[f"seen.{partition}"] = seen[partition] if partition in seen else {"$exists": False}
            update: dict[str, Any] = {"$set": {f"seen.{p}": o for p, o in new_seen.items()}}
            increments = {f"actions.{_escape(a)}": n for a, n in actions.items() if n}
            if total:
                update["$inc"] = {"total": total, **increments}
            if not new_seen:  # no positions: nothing to check, only to add
                condition, update = {"_id": key}, {"$inc": {"total": total, **increments}}
                if not total:
                    return
            result = await collection.update_one(condition, update)
            if result.matched_count == 1:
                self._remember(interval, key, {**seen, **new_seen})
                return
            self._seen.pop((interval, key), None)  # another writer moved it: read it again
        raise RuntimeError(f"could not update count bucket {key} after {ATTEMPTS} attempts (contention)")

    async def _insert(self, interval: Interval, key: str, change: _Change) -> bool:
        """Creates the bucket with this change; False when another writer created it first."""
        document = {
            "_id": key,
            "tenant": change.tenant,
            "start": change.start,
            "total": change.total,
            "actions": {_escape(a): n for a, n in change.actions.items()},
            "seen": dict(change.highest),
        }
        try:
            await self._collections[interval].insert_one(document)
        except DuplicateKeyError:
            return False
        self._remember(interval, key, dict(change.highest))
        return True

    def _remember(self, interval: Interval, key: str, seen: dict[str, int]) -> None:
        self._seen[(interval, key)] = seen
        self._seen.move_to_end((interval, key))
        if len(self._seen) > CACHED_BUCKETS:
            self._seen.popitem(last=False)

    async def take_out(self, erasure_id: str, documents: Sequence[Document]) -> set[tuple[Interval, str]]:
        """Takes erased events (their stored documents: ``_id``, tenant, timestamp, action, ``src``) out of
        every bucket that counted them, each once however often this runs; returns the buckets touched."""
        touched: set[tuple[Interval, str]] = set()
        for interval, collection in self._collections.items():
            updates = []
            for document in documents:
                key = f"{document['tenant']}/{interval.floor(document['timestamp']).isoformat()}"
                gone = f"gone.{erasure_id}.{_escape(document['_id'])}"
                condition: dict[str, Any] = {"_id": key, gone: {"$exists": False}}
                source = document.get(SOURCE)
                if source is not None:  # counted only once its bucket has seen its position
                    topic_partition, offset = source.rsplit(":", 1)
                    condition[f"seen.{_escape(topic_partition)}"] = {"$gte": int(offset)}
                action = f"actions.{_escape(document['action'])}"
                updates.append(
                    UpdateOne(condition, {"$inc": {"total": -1, action: -1}, "$set": {gone: True}})
                )
                touched.add((interval, key))
            for start in range(0, len(updates), UPDATES_PER_COMMAND):
                await collection.bulk_write(updates[start : start + UPDATES_PER_COMMAND], ordered=False)
        return touched

    async def forget_taken_out(self, erasure_id: str, buckets: Iterable[tuple[Interval, str]]) -> None:
        """Drops an erasure's notes from the buckets once its events are deleted (none comes out again)."""
        for interval, key in buckets:
            await self._collections[interval].update_one({"_id": key}, {"$unset": {f"gone.{erasure_id}": ""}})

    async def forget_before(self, cutoff: datetime) -> None:
        """Removes the buckets that end at or before ``cutoff`` (whose events retention removed)."""
        for interval, collection in self._collections.items():
            await collection.delete_many({"start": {"$lte": cutoff - interval.length}})
        self._seen.clear()

    async def count(self, query: CountQuery) -> list[BucketCount]:
        if query.user_id is not None:
            return await self._count_events(query)
        collection = self._collections[query.interval]
        try:
            documents = await collection.find(
                {"tenant": query.tenant, "start": {"$gte": query.first, "$lt": query.after_last}},
                projection={"seen": 0, "gone": 0},
                max_time_ms=self._read_ms,
            ).to_list()
        except ExecutionTimeout as exc:
            raise QueryTimedOut(str(exc)) from exc
        except ConnectionFailure as exc:
            raise StoreUnavailable(str(exc)) from exc
        buckets = []
        for document in documents:
            actions = {_unescape(a): int(n) for a, n in (document.get("actions") or {}).items() if n}
            if query.actions:
                actions = {a: n for a, n in actions.items() if a in query.actions}
            total = sum(actions.values()) if query.actions else int(document["total"])
            if total:
                buckets.append(BucketCount(document["start"], total, actions))
        return buckets

    async def _count_events(self, query: CountQuery) -> list[BucketCount]:
        """One user's events counted along the (userId, timestamp) index: the counts are not kept per user."""
        criteria: dict[str, Any] = {
            "tenant": query.tenant,
            "userId": query.user_id,
            "timestamp": {"$gte": query.first, "$lt": query.after_last},
        }
        if query.actions:
            criteria["action"] = {"$in": list(query.actions)}
        by_bucket: dict[datetime, dict[str, int]] = defaultdict(dict)
        try:
            found = self._activities.find(
                criteria, projection={"timestamp": 1, "action": 1}, max_time_ms=self._read_ms
            )
            async for document in found:
                actions = by_bucket[query.interval.floor(document["timestamp"])]
                actions[document["action"]] = actions.get(document["action"], 0) + 1
        except ExecutionTimeout as exc:
            raise QueryTimedOut(str(exc)) from exc
        except ConnectionFailure as exc:
            raise StoreUnavailable(str(exc)) from exc
        return [BucketCount(start, sum(a.values()), a) for start, a in sorted(by_bucket.items())]


def _changes(records: Iterable[Counted]) -> dict[Interval, dict[str, _Change]]:
    changes: dict[Interval, dict[str, _Change]] = defaultdict(dict)
    for record in records:
        for interval in Interval:
            start = interval.floor(record.activity.timestamp)
            key = f"{record.activity.tenant}/{start.isoformat()}"
            change = changes[interval].get(key)
            if change is None:
                change = changes[interval][key] = _Change(record.activity.tenant, start)
            partition = None
            if record.position is not None:
                partition = _escape(f"{record.position.topic}:{record.position.partition}")
                change.highest[partition] = max(record.position.offset, change.highest.get(partition, -1))
            if record.stored_it:
                change.total += 1
                action = record.activity.action
                change.actions[action] = change.actions.get(action, 0) + 1
                if partition is not None and record.position is not None:
                    change.records.append((partition, record.position.offset, action))
    return changes


def _escape(key: str) -> str:
    return key.replace("%", "%25").replace(".", "%2E").replace("$", "%24")


def _unescape(key: str) -> str:
    return key.replace("%24", "$").replace("%2E", ".").replace("%25", "%")
