"""ActivityRepository on MongoDB (or FerretDB, whose differences are in compat.py).

One document per event (documents.py), ``_id`` = event id, so storing is idempotent by construction; the
counts over time are kept beside them (counts.py), exactly, without transactions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bson.errors import InvalidDocument
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

from activity_service.domain.activity import DEFAULT_TENANT, Activity, EventKey
from activity_service.domain.delivery import LogPosition
from activity_service.domain.erasure import Erasure
from activity_service.domain.errors import QueryTimedOut, StoreUnavailable
from activity_service.domain.ports import StoreOutcome
from activity_service.domain.query import ActivityPage, ActivityQuery, Position
from activity_service.domain.stats import Interval
from activity_service.infrastructure.mongo.compat import ServerQuirks
from activity_service.infrastructure.mongo.counts import Counted, MongoCountKeeper
from activity_service.infrastructure.mongo.documents import (
    FINGERPRINT,
    SOURCE,
    Document,
    from_document,
    storage_id,
    to_document,
)

# A document BSON cannot hold, refused by the driver before anything is sent: too large, an integer
# beyond 64 bits (OverflowError), a string that is not UTF-8 (a lone surrogate), a key it refuses.
UNENCODABLE = (DocumentTooLarge, OverflowError, UnicodeEncodeError, InvalidDocument)

DUPLICATE_KEY = 11000
ERASED = "erased"
"""Storage only: the erasure whose pass is removing the document."""
ERASE_CHUNK = 1000
TTL_INDEX = "timestamp_ttl"
SORT = [("timestamp", DESCENDING), ("_id", DESCENDING)]
# One index per filter, each leading with the tenant (every query is one tenant's) and ending in the sort
# keys, so that tenant + filter + sort is one index range.
INDEXES = [
    IndexModel(
        [("tenant", ASCENDING), ("timestamp", DESCENDING), ("_id", DESCENDING)], name="tenant_timestamp_id"
    ),
    IndexModel(
        [("tenant", ASCENDING), ("userId", ASCENDING), ("timestamp", DESCENDING), ("_id", DESCENDING)],
        name="tenant_userId_timestamp_id",
    ),
    IndexModel(
        [("tenant", ASCENDING), ("action", ASCENDING), ("timestamp", DESCENDING), ("_id", DESCENDING)],
        name="tenant_action_timestamp_id",
    ),
]
# The indexes of before tenants: dropped once the tenant ones exist.
RETIRED_INDEXES = ("timestamp_id", "userId_timestamp_id", "action_timestamp_id")


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
        """Also brings events stored before tenants into the default tenant (once: later starts find
        none without a tenant), then drops the indexes they were read by."""
        await self._collection.update_many(
            {"tenant": {"$exists": False}}, {"$set": {"tenant": DEFAULT_TENANT}}
        )
        await self._quirks.create_indexes(self._collection, INDEXES)
        existing = {index["name"] async for index in await self._collection.list_indexes()}
        for name in RETIRED_INDEXES:
            if name in existing:
                await self._collection.drop_index(name)
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

    async def erase(self, erasure: Erasure) -> int:
        """Marks the covered events as this erasure's (``erased``), takes them out of the counts, then
        deletes them: a pass cut short leaves its marks, and the next pass of the erasure finishes them
        (the counts take out each event once: counts.take_out)."""
        user = {"tenant": erasure.tenant, "userId": erasure.user_id}
        await self._collection.update_many(
            {**user, "receivedAt": {"$lt": erasure.requested_at}, ERASED: {"$exists": False}},
            {"$set": {ERASED: erasure.id}},
        )
        marked = {**user, ERASED: erasure.id}
        projection = {"tenant": 1, "timestamp": 1, "action": 1, SOURCE: 1}
        touched: set[tuple[Interval, str]] = set()
        removed = 0
        while True:
            # Each chunk read to its end before writing: FerretDB on SQLite blocks writes behind an open
            # cursor of the same database.
            chunk = await self._collection.find(
                marked, projection=projection, limit=ERASE_CHUNK, batch_size=ERASE_CHUNK
            ).to_list()
            if not chunk:
                break
            touched |= await self.counts.take_out(erasure.id, chunk)
            deleted = await self._collection.delete_many(
                {**marked, "_id": {"$in": [d["_id"] for d in chunk]}}
            )
            removed += deleted.deleted_count
        await self.counts.forget_taken_out(erasure.id, touched)
        return removed

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
        except UNENCODABLE:
            # Raised before the server sees the batch, for all of it: find the culprit one by one (rare).
            verdicts = await self._add_one_by_one(documents)
        conflicts = await self._count(activities, where, verdicts)
        rejected = {activities[i].key: v for i, v in enumerate(verdicts) if v not in (_INSERTED, _DUPLICATE)}
        inserted = verdicts.count(_INSERTED)
        return StoreOutcome(
            inserted=inserted,
            duplicates=len(documents) - inserted - len(rejected),
            rejected=rejected,
            conflicts=conflicts,
        )

    async def _add_one_by_one(self, documents: Sequence[Document]) -> list[str]:
        verdicts = []
        for document in documents:
            try:
                await self._collection.insert_one(document)
                verdicts.append(_INSERTED)
            except DuplicateKeyError:
                verdicts.append(_DUPLICATE)
            except (*UNENCODABLE, WriteError) as exc:
                verdicts.append(f"{type(exc).__name__}: {exc}"[:500])
        return verdicts

    async def _count(
        self, activities: Sequence[Activity], positions: Sequence[LogPosition | None], verdicts: Sequence[str]
    ) -> list[EventKey]:
        """Counts what this batch stored; a duplicate counts when this very record stored it earlier (its
        first attempt, before a crash): the count keeper takes each record once, by its position. Returns
        the duplicates whose content differs from the stored event's (conflicts: counted nothing)."""
        looked_up = [
            i
            for i, v in enumerate(verdicts)
            if v == _DUPLICATE and (positions[i] is not None or activities[i].fingerprint is not None)
        ]
        stored = await self._stored([storage_id(*activities[i].key) for i in looked_up]) if looked_up else {}
        records, conflicts = [], []
        for i, verdict in enumerate(verdicts):
            activity, position = activities[i], positions[i]
            if verdict == _INSERTED:
                records.append(Counted(activity, position, stored_it=True))
            elif verdict == _DUPLICATE:
                found = stored.get(storage_id(*activity.key))
                source = None if found is None else found[0]
                # A fingerprinted duplicate of an event stored with another fingerprint, or none (the
                # server named it: nothing says it is the same event).
                printed = activity.fingerprint
                if printed is not None and found is not None and found[1] != printed:
                    conflicts.append(activity.key)
                elif position is not None:
                    records.append(Counted(activity, position, stored_it=source == str(position)))
        await self.counts.add(records)
        return conflicts

    async def _stored(self, ids: Sequence[str]) -> dict[str, tuple[str | None, str | None]]:
        """Which log position stored each of these documents, and the fingerprint it was stored with."""
        projection = {SOURCE: 1, FINGERPRINT: 1}
        if self._quirks.in_pushdown:
            found = self._collection.find({"_id": {"$in": list(ids)}}, projection=projection)
            return {d["_id"]: (d.get(SOURCE), d.get(FINGERPRINT)) async for d in found}
        stored = {}
        for stored_id in ids:  # FerretDB: only an equality on _id uses its index
            document = await self._collection.find_one({"_id": stored_id}, projection=projection)
            if document is not None:
                stored[stored_id] = (document.get(SOURCE), document.get(FINGERPRINT))
        return stored

    async def get(self, tenant: str, activity_id: str) -> Activity | None:
        try:
            document = await self._collection.find_one(
                {"_id": storage_id(tenant, activity_id)}, max_time_ms=self._read_ms
            )
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
    criteria: Document = {"tenant": query.tenant}
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
        "$or": [
            {"timestamp": {"$lt": position.timestamp}},
            {"_id": {"$lt": storage_id(criteria["tenant"], position.id)}},
        ],
    }
