"""Delivery records in MongoDB: the dead-letter log and the per-partition persist progress."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pymongo import ASCENDING, IndexModel, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, ConnectionFailure

from activity_service.domain.activity import DEFAULT_TENANT, EventKey
from activity_service.domain.delivery import DeadLetter, PartitionProgress
from activity_service.domain.errors import StoreUnavailable
from activity_service.infrastructure.mongo.compat import ServerQuirks
from activity_service.infrastructure.mongo.documents import Document

DUPLICATE_KEY = 11000


class MongoDeadLetterLog:
    """One document per dead-lettered message, ``_id`` = its source coordinates; ``tenant``, ``eventId`` and
    ``userId`` when the message was readable enough to tell (records of before tenants have no tenant:
    they are the default tenant's)."""

    def __init__(self, collection: AsyncCollection[Document], quirks: ServerQuirks) -> None:
        self._collection = collection
        self._quirks = quirks

    async def ensure_indexes(self) -> None:
        await self._collection.update_many(
            {"tenant": {"$exists": False}, "eventId": {"$ne": None}}, {"$set": {"tenant": DEFAULT_TENANT}}
        )
        await self._quirks.create_indexes(
            self._collection,
            [
                IndexModel([("tenant", ASCENDING), ("eventId", ASCENDING)], name="tenant_eventId"),
                IndexModel([("tenant", ASCENDING), ("userId", ASCENDING)], name="tenant_userId"),
            ],
        )
        existing = {index["name"] async for index in await self._collection.list_indexes()}
        if "eventId" in existing:
            await self._collection.drop_index("eventId")

    async def add(self, letter: DeadLetter) -> None:
        await self._collection.update_one(
            {"_id": letter.source},
            {
                "$set": {
                    "eventId": letter.event_id,
                    "tenant": letter.tenant,
                    "userId": letter.user_id,
                    "errorType": letter.error_type,
                    "reason": letter.reason,
                    "at": letter.at,
                }
            },
            upsert=True,
        )

    async def forget(self, events: Sequence[EventKey]) -> None:
        by_tenant: dict[str, list[str]] = {}
        for tenant, event_id in events:
            by_tenant.setdefault(tenant, []).append(event_id)
        for tenant, ids in by_tenant.items():
            await self._collection.delete_many({"tenant": tenant, "eventId": {"$in": ids}})

    async def forget_user(self, tenant: str, user_id: str, before: datetime) -> int:
        result = await self._collection.delete_many(
            {"tenant": tenant, "userId": user_id, "at": {"$lt": before}}
        )
        return result.deleted_count

    async def error_types(self, tenant: str, event_id: str) -> set[str]:
        try:
            found = self._collection.find(
                {"tenant": tenant, "eventId": event_id}, projection={"errorType": 1}
            )
            return {document["errorType"] async for document in found}
        except ConnectionFailure as exc:
            raise StoreUnavailable(str(exc)) from exc


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
