"""Delivery records in MongoDB: the dead-letter log and the per-partition persist progress."""

from __future__ import annotations

from collections.abc import Sequence

from pymongo import ASCENDING, IndexModel, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, ConnectionFailure

from activity_service.domain.delivery import DeadLetter, PartitionProgress
from activity_service.domain.errors import StoreUnavailable
from activity_service.infrastructure.mongo.compat import ServerQuirks
from activity_service.infrastructure.mongo.documents import Document

DUPLICATE_KEY = 11000


class MongoDeadLetterLog:
    """One document per dead-lettered message, ``_id`` = its source coordinates."""

    def __init__(self, collection: AsyncCollection[Document], quirks: ServerQuirks) -> None:
        self._collection = collection
        self._quirks = quirks

    async def ensure_indexes(self) -> None:
        await self._quirks.create_indexes(
            self._collection, [IndexModel([("eventId", ASCENDING)], name="eventId")]
        )

    async def add(self, letter: DeadLetter) -> None:
        await self._collection.update_one(
            {"_id": letter.source},
            {
                "$set": {
                    "eventId": letter.event_id,
                    "errorType": letter.error_type,
                    "reason": letter.reason,
                    "at": letter.at,
                }
            },
            upsert=True,
        )

    async def forget(self, event_ids: Sequence[str]) -> None:
        if event_ids:
            await self._collection.delete_many({"eventId": {"$in": list(event_ids)}})

    async def has_event(self, event_id: str) -> bool:
        try:
            found = await self._collection.find_one({"eventId": event_id}, projection={"_id": 1})
        except ConnectionFailure as exc:
            raise StoreUnavailable(str(exc)) from exc
        return found is not None


class MongoProgressLog:
    """One document per (topic, partition). A write never moves the offset back, so a consumer that lost
    a partition in a rebalance cannot undo what the new owner recorded."""

    def __init__(self, collection: AsyncCollection[Document], quirks: ServerQuirks) -> None:
        self._collection = collection
        self._quirks = quirks

    async def record(self, progress: Sequence[PartitionProgress]) -> None:
        ids = {f"{p.topic}:{p.partition}": p for p in progress}
        if not ids:
            return
        if not self._quirks.conditional_upserts:
            await self._read_then_write(ids)
            return
        # Only where the stored offset is not ahead; where it is, the upsert's insert meets the existing
        # _id: a duplicate key, which means "already further" and is no error.
        updates = [
            UpdateOne({"_id": key, "nextOffset": {"$lte": p.next_offset}}, {"$set": _fields(p)}, upsert=True)
            for key, p in ids.items()
        ]
        try:
            await self._collection.bulk_write(updates, ordered=False)
        except BulkWriteError as exc:
            if exc.details.get("writeConcernErrors") or any(
                e.get("code") != DUPLICATE_KEY for e in exc.details.get("writeErrors", [])
            ):
                raise

    async def _read_then_write(self, ids: dict[str, PartitionProgress]) -> None:
        """FerretDB: read, then write only what moves forward. Two consumers write one partition only
        around a rebalance; the last one wins."""
        stored = {
            d["_id"]: d["nextOffset"]
            async for d in self._collection.find({"_id": {"$in": list(ids)}}, projection={"nextOffset": 1})
        }
        updates = [
            UpdateOne({"_id": key}, {"$set": _fields(p)}, upsert=True)
            for key, p in ids.items()
            if stored.get(key, -1) <= p.next_offset
        ]
        if updates:
            await self._collection.bulk_write(updates, ordered=False)

    async def read(self, topic: str) -> Sequence[PartitionProgress]:
        try:
            return await self._read(topic)
        except ConnectionFailure as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def _read(self, topic: str) -> list[PartitionProgress]:
        return [
            PartitionProgress(
                topic=d["topic"],
                partition=d["partition"],
                next_offset=d["nextOffset"],
                last_received_at=d.get("lastReceivedAt"),
                caught_up=d["caughtUp"],
                recorded_at=d["recordedAt"],
            )
            async for d in self._collection.find({"topic": topic})
        ]


def _fields(p: PartitionProgress) -> Document:
    fields: Document = {
        "topic": p.topic,
        "partition": p.partition,
        "nextOffset": p.next_offset,
        "caughtUp": p.caught_up,
        "recordedAt": p.recorded_at,
    }
    if p.last_received_at is not None:  # unknown after a restart: keep what is stored
        fields["lastReceivedAt"] = p.last_received_at
    return fields
