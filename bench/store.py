"""The database for the bench: the raw insert_many ceiling, the query data set, explain plans, clean-up,
and a cheap "is this id stored yet" check for the freshness probe."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from activity_service.infrastructure.mongo.compat import quirks_of
from activity_service.infrastructure.mongo.repository import MongoActivityRepository
from activity_service.infrastructure.settings import Settings
from bench.stats import ms, percentile

Document = dict[str, Any]


@asynccontextmanager
async def mongo_database(settings: Settings) -> AsyncIterator[AsyncDatabase[Document]]:
    """The database the settings name, on a client of the bench's own (closed on the way out)."""
    client: AsyncMongoClient[Document] = AsyncMongoClient(settings.mongodb.uri, tz_aware=True)
    try:
        yield client[settings.mongodb.database]
    finally:
        await client.close()


async def ensure_indexes(collection: AsyncCollection[Document]) -> None:
    """The service's own activity indexes, made as the service makes them on this server."""
    await MongoActivityRepository(collection, await quirks_of(collection.database)).ensure_indexes()


async def raw_insert_rate(
    collection: AsyncCollection[Document],
    count: int,
    batch: int,
    documents: Callable[[int, int], list[Document]],
) -> dict[str, float]:
    """The ceiling of the consumer: the same documents, unordered insert_many of the same batch size, into
    a collection of the same database with the same indexes. Only the insert_many calls are timed."""
    await ensure_indexes(collection)
    spent = 0.0
    latencies: list[float] = []
    tenths: list[float] = [0.0] * 10  # time spent on each tenth of the documents: the rate as it fills
    for start in range(0, count, batch):
        docs = documents(start, min(start + batch, count))
        began = time.perf_counter()
        await collection.insert_many(docs, ordered=False)
        took = time.perf_counter() - began
        spent += took
        latencies.append(took)
        tenths[min(9, start * 10 // count)] += took
    return {
        "events_per_second": round(count / spent, 1) if spent else 0.0,
        "events": count,
        "seconds": round(spent, 3),
        "batch_p50_ms": ms(percentile(latencies, 50)),
        "batch_p99_ms": ms(percentile(latencies, 99)),
        "first_tenth_events_per_second": round(count / 10 / tenths[0], 1) if tenths[0] else 0.0,
        "last_tenth_events_per_second": round(count / 10 / tenths[9], 1) if tenths[9] else 0.0,
    }


async def insert_all(
    collection: AsyncCollection[Document], documents: Iterable[Document], batch: int
) -> float:
    """Insert everything in big unordered batches; returns documents/s."""
    chunk: list[Document] = []
    count = 0
    started = time.perf_counter()
    for document in documents:
        chunk.append(document)
        if len(chunk) >= batch:
            await collection.insert_many(chunk, ordered=False)
            count += len(chunk)
            chunk = []
    if chunk:
        await collection.insert_many(chunk, ordered=False)
        count += len(chunk)
    return count / (time.perf_counter() - started)


async def explain(database: AsyncDatabase[Document], command: Document) -> Document:
    """What the server says it does with a find: FerretDB reports its pushdowns and the SQLite plan."""
    answer = await database.command("explain", command)
    keep = ("filterPushdown", "sortPushdown", "limitPushdown", "queryPlanner")
    return {k: answer[k] for k in keep if k in answer} or {"explain": str(answer)[:500]}


async def drop_databases(uri: str, prefix: str) -> list[str]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        doomed = [name for name in await client.list_database_names() if name.startswith(prefix)]
        for name in doomed:
            await client.drop_database(name)
    finally:
        await client.close()
    return doomed


async def server_version(database: AsyncDatabase[Document]) -> str:
    info = await database.command("buildInfo")
    if "ferretdbVersion" in info:
        return f"FerretDB {info['ferretdbVersion']} (MongoDB wire {info.get('version')})"
    return f"MongoDB {info.get('version')}"


class SqliteVisibility:
    """Whether events are stored, read straight from FerretDB's SQLite file (read-only).

    On FerretDB 1.24 with SQLite even a find by `_id` scans the whole table (its SQL does not match the
    index), so polling hundreds of ids per second through the wire protocol would load the database it
    measures. The row is visible to every reader the moment FerretDB commits the insert, so reading the
    committed rows through SQLite's own `_id` index measures the same instant, at microseconds a poll.
    """

    def __init__(self, path: Path, collection: str) -> None:
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        row = self._db.execute(
            "SELECT table_name FROM _ferretdb_collections WHERE name = ?", (collection,)
        ).fetchone()
        if row is None:
            raise LookupError(f"collection {collection!r} not in {path}")
        self._table = row[0]

    @classmethod
    def find(cls, database: str, collection: str) -> SqliteVisibility | None:
        """The local FerretDB's file for ``database``, or None (another server: use the wire protocol)."""
        cache = Path(os.environ.get("ACTIVITY_CACHE", Path.home() / ".cache" / "activity-service"))
        stack = Path(os.environ.get("STACK_DIR", cache / "stack"))
        path = stack / "ferretdb" / "data" / f"{database}.sqlite"
        if not path.is_file():
            return None
        try:
            return cls(path, collection)
        except (sqlite3.Error, LookupError):
            return None

    def stored(self, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        rows = self._db.execute(
            f"SELECT _ferretdb_sjson->>'_id' FROM \"{self._table}\" "
            f"WHERE _ferretdb_sjson->'_id' IN ({marks})",
            [f'"{i}"' for i in ids],
        ).fetchall()
        return {r[0] for r in rows}

    def uses_index(self) -> bool:
        plan = self._db.execute(
            f"EXPLAIN QUERY PLAN SELECT 1 FROM \"{self._table}\" WHERE _ferretdb_sjson->'_id' IN (?)", ['"x"']
        ).fetchall()
        return any("INDEX" in str(step[-1]) for step in plan)

    def close(self) -> None:
        self._db.close()
