"""Delivery records in MongoDB: the dead-letter log and the per-partition persist progress."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo import ASCENDING, IndexModel, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import ConnectionFailure

from activity_service.domain.delivery import DeadLetter, PartitionProgress
from activity_service.domain.errors import StoreUnavailable

Document = dict[str, Any]


class MongoDeadLetterLog:
    """One document per dead-lettered message, ``_id`` = its source coordinates."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection

    async def ensure_indexes(self) -> None:
        existing = {index["name"] async for index in await self._collection.list_indexes()}
        if "eventId" not in existing:
            await self._collection.create_indexes([IndexModel([("eventId", ASCENDING)], name="eventId")])

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

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection

    async def record(self, progress: Sequence[PartitionProgress]) -> None:
        ids = {f"{p.topic}:{p.partition}": p for p in progress}
        if not ids:
            return
        # Read, then write only what moves forward. (A filter on the offset plus upsert would do it in one
        # step on MongoDB, but FerretDB 1.24 answers the resulting duplicate key with a reply PyMongo
        # cannot parse.) Two consumers write one partition only around a rebalance; the last one wins.
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
