"""What this service does differently on FerretDB 1.24 than on MongoDB, in one place.

The server says what it is (``buildInfo`` carries ``ferretdbVersion`` on FerretDB), and the adapters ask
the chosen ``ServerQuirks`` instead of guessing, so the MongoDB path reads as plain MongoDB:

- **Only an equality on ``_id`` uses an index** (on SQLite it pushes no other filter down): lookups by
  several ids are made one by one rather than with ``$in``, which would scan the collection.
- **Creating an index that already exists drops the connection**: create only the missing ones, listing
  first, and look again when the connection was lost (the API and the consumer may race at start-up).
  MongoDB's ``createIndexes`` is idempotent: one call.
- **A conditional upsert that meets a newer document** answers the duplicate key with a reply PyMongo
  cannot parse: progress is read, then only what moves forward is written. On MongoDB one conditional
  upsert does it, and its duplicate key means "already further".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from pymongo import IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import AutoReconnect, OperationFailure

Document = dict[str, Any]


UPDATES_PER_COMMAND = 50
"""At most this many updates in one bulk write: FerretDB v1.24 never answers an update command of 100
statements or more (measured here: 99 take 0.7 s, 100 hang). MongoDB takes 100,000; 50 costs it little."""


@dataclass(frozen=True, slots=True)
class ServerQuirks:
    server: str
    """What the server reported, for the start-up log: ``MongoDB 8.0.4``, ``FerretDB v1.24.2``."""
    in_pushdown: bool
    idempotent_index_creation: bool
    conditional_upserts: bool

    async def create_indexes(
        self, collection: AsyncCollection[Document], indexes: Sequence[IndexModel]
    ) -> None:
        if self.idempotent_index_creation:
            await collection.create_indexes(list(indexes))
            return
        for attempt in range(3):
            existing = {index["name"] async for index in await collection.list_indexes()}
            missing = [index for index in indexes if index.document["name"] not in existing]
            if not missing:
                return
            try:
                await collection.create_indexes(missing)
                return
            except (AutoReconnect, OperationFailure):
                if attempt == 2:
                    raise


MONGODB = ServerQuirks("MongoDB", in_pushdown=True, idempotent_index_creation=True, conditional_upserts=True)
FERRETDB = ServerQuirks(
    "FerretDB", in_pushdown=False, idempotent_index_creation=False, conditional_upserts=False
)


async def quirks_of(database: AsyncDatabase[Document]) -> ServerQuirks:
    info = await database.command("buildInfo")
    if "ferretdbVersion" in info:
        return replace(FERRETDB, server=f"FerretDB {info['ferretdbVersion']}")
    return replace(MONGODB, server=f"MongoDB {info.get('version', '?')}")
