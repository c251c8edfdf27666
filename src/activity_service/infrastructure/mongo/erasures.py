"""The erasure log on MongoDB: one document per erasure, ``_id`` = its id.

A claim is one ``find_one_and_update`` (atomic on both servers), so two consumers never run the same
erasure at once while its lease holds.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import ConnectionFailure

from activity_service.domain.erasure import Erasure, ErasureStatus, UserKey
from activity_service.domain.errors import StoreUnavailable
from activity_service.infrastructure.mongo.compat import ServerQuirks
from activity_service.infrastructure.mongo.documents import Document

DONE = ErasureStatus.DONE.value


class MongoErasureLog:
    def __init__(self, collection: AsyncCollection[Document], quirks: ServerQuirks) -> None:
        self._collection = collection
        self._quirks = quirks

    async def ensure_indexes(self) -> None:
        await self._quirks.create_indexes(
            self._collection,
            [
                IndexModel([("tenant", ASCENDING), ("userId", ASCENDING)], name="tenant_userId"),
                IndexModel([("status", ASCENDING), ("requestedAt", ASCENDING)], name="status_requestedAt"),
            ],
        )

    async def add(self, erasure: Erasure) -> None:
        try:
            await self._insert(erasure)
        except ConnectionFailure as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def _insert(self, erasure: Erasure) -> None:
        await self._collection.insert_one(
            {
                "_id": erasure.id,
                "tenant": erasure.tenant,
                "userId": erasure.user_id,
                "requestedAt": erasure.requested_at,
                "status": erasure.status.value,
                "removed": erasure.removed,
                "finishedAt": erasure.finished_at,
                "generation": erasure.generation,
                "leaseUntil": None,
            }
        )

    async def get(self, tenant: str, erasure_id: str) -> Erasure | None:
        try:
            document = await self._collection.find_one({"_id": erasure_id, "tenant": tenant})
        except ConnectionFailure as exc:
            raise StoreUnavailable(str(exc)) from exc
        if document is None:
            return None
        return _erasure(document)

    async def erased_before(self, users: Collection[UserKey]) -> dict[UserKey, datetime]:
        if not users:
            return {}
        tenants = sorted({tenant for tenant, _ in users})
        user_ids = sorted({user_id for _, user_id in users})
        found = self._collection.find(
            {"tenant": {"$in": tenants}, "userId": {"$in": user_ids}},
            projection={"tenant": 1, "userId": 1, "requestedAt": 1},
        )
        latest: dict[UserKey, datetime] = {}
        async for document in found:
            user = (document["tenant"], document["userId"])
            if user in users and (user not in latest or document["requestedAt"] > latest[user]):
                latest[user] = document["requestedAt"]
        return latest

    async def claim(self, now: datetime, lease: timedelta) -> Erasure | None:
        document = await self._collection.find_one_and_update(
            {
                "status": {"$ne": DONE},
                "$or": [{"leaseUntil": None}, {"leaseUntil": {"$lte": now}}],
            },
            {"$set": {"status": ErasureStatus.RUNNING.value, "leaseUntil": now + lease}},
            sort=[("requestedAt", ASCENDING)],
            return_document=ReturnDocument.AFTER,
        )
        return None if document is None else _erasure(document, claimed=True)

    async def record_pass(self, erasure: Erasure, removed: int, now: datetime) -> bool:
        held = {"_id": erasure.id, "leaseUntil": erasure.held_until}
        done = await self._collection.update_one(
            {**held, "generation": erasure.generation},
            {
                "$inc": {"removed": removed},
                "$set": {"status": DONE, "finishedAt": now, "leaseUntil": None},
            },
        )
        if done.matched_count == 1:
            return True
        # Raced meanwhile (free it for the next pass), or no longer ours: count what this pass removed.
        await self._collection.update_one({"_id": erasure.id}, {"$inc": {"removed": removed}})
        await self._collection.update_one(held, {"$set": {"leaseUntil": None}})
        return False

    async def raced(self, users: Collection[UserKey]) -> None:
        for tenant, user_id in sorted(users):
            user = {"tenant": tenant, "userId": user_id}
            await self._collection.update_many(user, {"$inc": {"generation": 1}})
            await self._collection.update_many(
                {**user, "status": DONE},
                {"$set": {"status": ErasureStatus.RUNNING.value, "finishedAt": None}},
            )


def _erasure(document: dict[str, Any], *, claimed: bool = False) -> Erasure:
    return Erasure(
        id=document["_id"],
        tenant=document["tenant"],
        user_id=document["userId"],
        requested_at=document["requestedAt"],
        status=ErasureStatus(document["status"]),
        removed=int(document.get("removed", 0)),
        finished_at=document.get("finishedAt"),
        generation=int(document.get("generation", 0)),
        held_until=document.get("leaseUntil") if claimed else None,
    )
