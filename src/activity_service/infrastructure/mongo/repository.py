"""ActivityRepository on MongoDB (or FerretDB, whose differences are in compat.py).

One document per event (documents.py), ``_id`` = event id, so storing is idempotent by construction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DocumentTooLarge,
    DuplicateKeyError,
    WriteError,
)

from activity_service.domain.activity import Activity
from activity_service.domain.errors import StoreUnavailable
from activity_service.domain.ports import StoreOutcome
from activity_service.domain.query import ActivityPage, ActivityQuery, Position
from activity_service.infrastructure.mongo.compat import ServerQuirks
from activity_service.infrastructure.mongo.documents import Document, from_document, to_document

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
    def __init__(self, collection: AsyncCollection[Document], quirks: ServerQuirks) -> None:
        self._collection = collection
        self._quirks = quirks

    async def ensure_indexes(self) -> None:
        await self._quirks.create_indexes(self._collection, INDEXES)

    async def apply_retention(self, days: int) -> bool:
        """Make the server expire events ``days`` after their timestamp (0: never) with a TTL index.

        Returns False when the server has no TTL indexes (FerretDB): then the caller purges with
        ``purge_before`` instead."""
        if not self._quirks.ttl_indexes:
            return days == 0
        existing = {index["name"]: index async for index in await self._collection.list_indexes()}
        ttl = existing.get(TTL_INDEX)
        if days == 0:
            if ttl is not None:
                await self._collection.drop_index(TTL_INDEX)
            return True
        seconds = days * 86_400
        if ttl is not None:
            if ttl.get("expireAfterSeconds") != seconds:
                await self._collection.database.command(
                    "collMod", self._collection.name, index={"name": TTL_INDEX, "expireAfterSeconds": seconds}
                )
            return True
        await self._collection.create_indexes(
            [IndexModel([("timestamp", ASCENDING)], name=TTL_INDEX, expireAfterSeconds=seconds)]
        )
        return True

    async def purge_before(self, cutoff: datetime) -> int:
        result = await self._collection.delete_many({"timestamp": {"$lt": cutoff}})
        return result.deleted_count

    async def add_many(self, activities: Sequence[Activity]) -> StoreOutcome:
        documents = [to_document(a) for a in activities]
        try:
            result = await self._collection.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            return _outcome_of(exc, documents)
        except DocumentTooLarge:
            # Raised before the server sees the batch, for all of it: find the culprit one by one (rare).
            return await self._add_one_by_one(documents)
        return StoreOutcome(inserted=len(result.inserted_ids), duplicates=0)

    async def _add_one_by_one(self, documents: Sequence[Document]) -> StoreOutcome:
        inserted = duplicates = 0
        rejected: dict[str, str] = {}
        for document in documents:
            try:
                await self._collection.insert_one(document)
                inserted += 1
            except DuplicateKeyError:
                duplicates += 1
            except (DocumentTooLarge, WriteError) as exc:
                rejected[str(document["_id"])] = f"{type(exc).__name__}: {exc}"[:500]
        return StoreOutcome(inserted=inserted, duplicates=duplicates, rejected=rejected)

    async def get(self, activity_id: str) -> Activity | None:
        try:
            document = await self._collection.find_one({"_id": activity_id})
        except ConnectionFailure as exc:
            raise StoreUnavailable(str(exc)) from exc
        return None if document is None else from_document(document)

    async def find(self, query: ActivityQuery) -> ActivityPage:
        criteria = filter_for(query)
        # One row more than asked tells whether another page follows, without counting.
        cursor = self._collection.find(
            keyset_filter(criteria, query.after), sort=SORT, skip=query.skip, limit=query.limit + 1
        )
        try:
            if query.count_total:
                documents, total = await asyncio.gather(
                    cursor.to_list(), self._collection.count_documents(criteria)
                )
            else:
                documents, total = await cursor.to_list(), None
        except ConnectionFailure as exc:
            raise StoreUnavailable(str(exc)) from exc
        return ActivityPage(
            items=[from_document(d) for d in documents[: query.limit]],
            total=total,
            page=query.page,
            limit=query.limit,
            has_more=len(documents) > query.limit,
        )

    async def ping(self) -> None:
        await self._collection.database.command("ping")


def _outcome_of(exc: BulkWriteError, documents: Sequence[Document]) -> StoreOutcome:
    """In an unordered insert every document gets its own verdict: a duplicate key means "already
    stored"; any other write error is the server refusing that one document for good. A write-concern
    error leaves durability unknown, so the whole batch must be retried."""
    if exc.details.get("writeConcernErrors"):
        raise exc
    errors = exc.details.get("writeErrors", [])
    rejected = {
        str(documents[e["index"]]["_id"]): f"code {e.get('code')}: {e.get('errmsg', '')}"[:500]
        for e in errors
        if e.get("code") != DUPLICATE_KEY
    }
    return StoreOutcome(
        inserted=int(exc.details.get("nInserted", 0)),
        duplicates=len(errors) - len(rejected),
        rejected=rejected,
    )


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
