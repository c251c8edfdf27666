"""ActivityRepository on MongoDB (or FerretDB, whose differences are in compat.py).

One document per event (documents.py), ``_id`` = event id, so storing is idempotent by construction; the
counts over time are kept beside them (counts.py), exactly, without transactions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DocumentTooLarge,
    DuplicateKeyError,
    ExecutionTimeout,
    WriteError,
)

from activity_service.domain.activity import Activity
from activity_service.domain.delivery import LogPosition
from activity_service.domain.errors import QueryTimedOut, StoreUnavailable
from activity_service.domain.ports import StoreOutcome
from activity_service.domain.query import ActivityPage, ActivityQuery, Position
from activity_service.domain.stats import Interval
from activity_service.infrastructure.mongo.compat import ServerQuirks
from activity_service.infrastructure.mongo.counts import Counted, MongoCountKeeper
from activity_service.infrastructure.mongo.documents import SOURCE, Document, from_document, to_document

DUPLICATE_KEY = 11000
TTL_INDEX = "timestamp_ttl"
SORT = [("timestamp", DESCENDING), ("_id", DESCENDING)]
# One index per filter, each ending in the sort keys so that filter + sort is one index range.
INDEXES = [
    IndexModel([("timestamp", DESCENDING), ("_id", DESCENDING)], name="timestamp_id"),
    IndexModel(
        [("userId", ASCENDING), ("timestamp", DESCENDING), ("_id", DESCENDING)], name="userId_timestamp_id"
    ),
    IndexModel(
        [("action", ASCENDING), ("timestamp", DESCENDING), ("_id", DESCENDING)], name="action_timestamp_id"
    ),
]


class MongoActivityRepository:
    def __init__(
        self,
        collection: AsyncCollection[Document],
        quirks: ServerQuirks,
        *,
        read_timeout_ms: int | None = None,
    ) -> None:
        """``read_timeout_ms``: every read's maxTimeMS (the server stops it there: QueryTimedOut)."""
        self._collection = collection
        self._quirks = quirks
        self._read_ms = read_timeout_ms
        self.counts = MongoCountKeeper(collection, quirks, read_timeout_ms=read_timeout_ms)

    async def ensure_indexes(self) -> None:
        await self._quirks.create_indexes(self._collection, INDEXES)
        await self.counts.ensure_indexes()

    async def apply_retention(self, days: int) -> bool:
        """Returns whether the database expires events itself: never here, even on MongoDB, whose TTL
        index would remove events one by one behind the counts' back. The consumer purges whole days
        (``purge_before``) instead, events and counts together. A TTL index left by an older version
        is dropped."""
        existing = {index["name"] async for index in await self._collection.list_indexes()}
        if TTL_INDEX in existing:
            await self._collection.drop_index(TTL_INDEX)
        return days == 0

    async def purge_before(self, cutoff: datetime) -> int:
        cutoff = Interval.DAY.floor(cutoff)  # whole days, so whole count buckets go
        result = await self._collection.delete_many({"timestamp": {"$lt": cutoff}})
        await self.counts.forget_before(cutoff)
        return result.deleted_count

    async def add_many(
        self, activities: Sequence[Activity], positions: Sequence[LogPosition] | None = None
    ) -> StoreOutcome:
        where: Sequence[LogPosition | None] = positions if positions is not None else [None] * len(activities)
        documents = [to_document(a, p) for a, p in zip(activities, where, strict=True)]
        try:
            await self._collection.insert_many(documents, ordered=False)
            verdicts = [_INSERTED] * len(documents)
        except BulkWriteError as exc:
            verdicts = _verdicts_of(exc, len(documents))
        except DocumentTooLarge:
            # Raised before the server sees the batch, for all of it: find the culprit one by one (rare).
            verdicts = await self._add_one_by_one(documents)
        await self._count(activities, where, verdicts)
        rejected = {
            str(documents[i]["_id"]): v for i, v in enumerate(verdicts) if v not in (_INSERTED, _DUPLICATE)
        }
        inserted = verdicts.count(_INSERTED)
        return StoreOutcome(
            inserted=inserted, duplicates=len(documents) - inserted - len(rejected), rejected=rejected
        )

    async def _add_one_by_one(self, documents: Sequence[Document]) -> list[str]:
        verdicts = []
        for document in documents:
            try:
                await self._collection.insert_one(document)
                verdicts.append(_INSERTED)
            except DuplicateKeyError:
                verdicts.append(_DUPLICATE)
            except (DocumentTooLarge, WriteError) as exc:
                verdicts.append(f"{type(exc).__name__}: {exc}"[:500])
        return verdicts

    async def _count(
        self, activities: Sequence[Activity], positions: Sequence[LogPosition | None], verdicts: Sequence[str]
    ) -> None:
        """Counts what this batch stored; a duplicate counts when this very record stored it earlier (its
        first attempt, before a crash): the count keeper takes each record once, by its position."""
        duplicates = [i for i, v in enumerate(verdicts) if v == _DUPLICATE and positions[i] is not None]
        stored_by = await self._sources([activities[i].id for i in duplicates]) if duplicates else {}
        records = []
        for i, verdict in enumerate(verdicts):
            position = positions[i]
            if verdict == _INSERTED:
                records.append(Counted(activities[i], position, stored_it=True))
            elif verdict == _DUPLICATE and position is not None:
                records.append(
                    Counted(
                        activities[i], position, stored_it=stored_by.get(activities[i].id) == str(position)
                    )
                )
        await self.counts.add(records)

    async def _sources(self, event_ids: Sequence[str]) -> dict[str, str | None]:
        """Which log position stored each of these events."""
        if self._quirks.in_pushdown:
            found = self._collection.find({"_id": {"$in": list(event_ids)}}, projection={SOURCE: 1})
            return {d["_id"]: d.get(SOURCE) async for d in found}
        sources = {}
        for event_id in event_ids:  # FerretDB: only an equality on _id uses its index
            document = await self._collection.find_one({"_id": event_id}, projection={SOURCE: 1})
            if document is not None:
                sources[event_id] = document.get(SOURCE)
        return sources

    async def get(self, activity_id: str) -> Activity | None:
        try:
            document = await self._collection.find_one({"_id": activity_id}, max_time_ms=self._read_ms)
        except ExecutionTimeout as exc:
            raise QueryTimedOut(str(exc)) from exc
        except ConnectionFailure as exc:
            raise StoreUnavailable(str(exc)) from exc
        return None if document is None else from_document(document)

    async def find(self, query: ActivityQuery) -> ActivityPage:
        criteria = filter_for(query)
        # One row more than asked tells whether another page follows, without counting.
        cursor = self._collection.find(
            keyset_filter(criteria, query.after),
            sort=SORT,
            skip=query.skip,
            limit=query.limit + 1,
            max_time_ms=self._read_ms,
        )
        try:
            if query.count_total:
                documents, total = await asyncio.gather(
                    cursor.to_list(), self._matches(criteria, query.count_limit)
                )
            else:
                documents, total = await cursor.to_list(), None
        except ExecutionTimeout as exc:
            raise QueryTimedOut(str(exc)) from exc
        except ConnectionFailure as exc:
            raise StoreUnavailable(str(exc)) from exc
        capped = total is not None and query.count_limit is not None and total > query.count_limit
        return ActivityPage(
            items=[from_document(d) for d in documents[: query.limit]],
            total=query.count_limit if capped else total,
            page=query.page,
            limit=query.limit,
            has_more=len(documents) > query.limit,
            total_capped=capped,
        )

    async def _matches(self, criteria: Document, limit: int | None) -> int:
        """Matches, counting one past ``limit`` at most (so that a capped total can be told)."""
        options: dict[str, Any] = {} if limit is None else {"limit": limit + 1}
        if self._read_ms is not None:
            options["maxTimeMS"] = self._read_ms
        return await self._collection.count_documents(criteria, None, **options)

    async def ping(self) -> None:
        await self._collection.database.command("ping")


_INSERTED = "inserted"
_DUPLICATE = "duplicate"


def _verdicts_of(exc: BulkWriteError, count: int) -> list[str]:
    """In an unordered insert every document gets its own verdict: a duplicate key means "already
    stored"; any other write error is the server refusing that one document for good (the verdict is
    why). A write-concern error leaves durability unknown, so the whole batch must be retried."""
    if exc.details.get("writeConcernErrors"):
        raise exc
    verdicts = [_INSERTED] * count
    for error in exc.details.get("writeErrors", []):
        code = error.get("code")
        verdicts[error["index"]] = (
            _DUPLICATE if code == DUPLICATE_KEY else f"code {code}: {error.get('errmsg', '')}"[:500]
        )
    return verdicts


def filter_for(query: ActivityQuery) -> Document:
    """Only typed values go into the filter (strings, times), so no query operator can be smuggled in."""
    criteria: Document = {}
    if query.user_id is not None:
        criteria["userId"] = query.user_id
    if len(query.actions) == 1:
        criteria["action"] = query.actions[0]
    elif query.actions:
        criteria["action"] = {"$in": list(query.actions)}
    bounds: Document = {}
    if query.start is not None:
        bounds["$gte"] = query.start
    if query.end is not None:
        bounds["$lte"] = query.end
    if bounds:
        criteria["timestamp"] = bounds
    return criteria


def keyset_filter(criteria: Document, position: Position | None) -> Document:
    """Rows strictly after ``position`` in (timestamp desc, _id desc) order.

    ``timestamp <= t`` bounds the index range (so the scan starts at the position, however deep); the
    ``$or`` then drops the rows of the boundary timestamp that came before it.
    """
    if position is None:
        return criteria
    bounds = dict(criteria.get("timestamp", {}))
    bounds["$lte"] = min(bounds.get("$lte", position.timestamp), position.timestamp)
    return {
        **criteria,
        "timestamp": bounds,
        "$or": [{"timestamp": {"$lt": position.timestamp}}, {"_id": {"$lt": position.id}}],
    }
