"""What a deployment's store holds, read straight from the database (not through the API), the same way
for every store: for end-to-end and fault tests that must check the state itself."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

import asyncpg
from pymongo import MongoClient

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Event:
    tenant: str
    id: str
    user_id: str
    received_at: datetime
    ip_address: str | None


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored event as a ledger reads it: under which tenant, written by which key, with what."""

    tenant: str
    id: str
    source: str | None
    metadata: dict[str, Any]

    @property
    def key(self) -> str:
        """The id, prefixed by its tenant outside ``default``: unique across tenants, alike on every store."""
        return self.id if self.tenant == "default" else f"{self.tenant}/{self.id}"


class StoredView(Protocol):
    def ids(self) -> list[str]: ...

    def keys(self) -> list[str]:
        """Every stored event's ``Entry.key``."""
        ...

    def entries(self) -> list[Entry]: ...

    def count(self) -> int: ...

    def has(self, event_id: str) -> bool: ...

    def metadata(self) -> list[dict[str, Any]]:
        """Every stored event's metadata."""
        ...

    def times_and_actions(self) -> list[tuple[datetime, str]]:
        """Every stored event's (effective) timestamp and action: what counts over time count."""
        ...

    def events(self) -> list[Event]:
        """Every stored event, as who and when (whatever its tenant)."""
        ...

    def delete(self, event_ids: Sequence[str]) -> None:
        """Remove events behind the service's back (to test that a replay restores them)."""
        ...

    def dead_letters(self) -> dict[str, str | None]:
        """Dead-letter records: source -> event id."""
        ...

    def add_dead_letter(self, source: str, event_id: str, error_type: str) -> None: ...

    def dead_letter_users(self) -> list[tuple[str | None, str | None]]:
        """Each dead-letter record's (tenant, user id), when known."""
        ...

    def expires_by_itself(self) -> bool:
        """Whether the database expires old events on its own (a MongoDB TTL index)."""
        ...

    def close(self) -> None: ...


class MongoView:
    def __init__(self, uri: str, database: str) -> None:
        self._client: MongoClient[dict[str, Any]] = MongoClient(uri, tz_aware=True)
        self._db = self._client[database]

    def ids(self) -> list[str]:
        return [d["_id"] for d in self._db["activities"].find({}, projection={"_id": 1})]

    def keys(self) -> list[str]:
        return self.ids()  # outside `default` the service already stores the id as "tenant/id"

    def entries(self) -> list[Entry]:
        found = self._db["activities"].find({}, projection={"tenant": 1, "source": 1, "metadata": 1})
        entries = []
        for d in found:
            tenant = d.get("tenant", "default")
            event_id = d["_id"] if tenant == "default" else d["_id"].removeprefix(f"{tenant}/")
            entries.append(Entry(tenant, event_id, d.get("source"), d.get("metadata") or {}))
        return entries

    def count(self) -> int:
        return int(self._db["activities"].count_documents({}))

    def has(self, event_id: str) -> bool:
        return self._db["activities"].count_documents({"_id": event_id}) == 1

    def metadata(self) -> list[dict[str, Any]]:
        return [d.get("metadata") or {} for d in self._db["activities"].find({}, projection={"metadata": 1})]

    def times_and_actions(self) -> list[tuple[datetime, str]]:
        found = self._db["activities"].find({}, projection={"timestamp": 1, "action": 1})
        return [(d["timestamp"], d["action"]) for d in found]

    def events(self) -> list[Event]:
        found = self._db["activities"].find(
            {}, projection={"tenant": 1, "userId": 1, "receivedAt": 1, "ipAddress": 1}
        )
        events = []
        for d in found:
            tenant = d.get("tenant", "default")
            event_id = d["_id"] if tenant == "default" else d["_id"].removeprefix(f"{tenant}/")
            events.append(Event(tenant, event_id, d["userId"], d["receivedAt"], d.get("ipAddress")))
        return events

    def delete(self, event_ids: Sequence[str]) -> None:
        self._db["activities"].delete_many({"_id": {"$in": list(event_ids)}})

    def dead_letters(self) -> dict[str, str | None]:
        return {d["_id"]: d.get("eventId") for d in self._db["dead_letters"].find()}

    def add_dead_letter(self, source: str, event_id: str, error_type: str) -> None:
        self._db["dead_letters"].insert_one({"_id": source, "eventId": event_id, "errorType": error_type})

    def dead_letter_users(self) -> list[tuple[str | None, str | None]]:
        return [(d.get("tenant"), d.get("userId")) for d in self._db["dead_letters"].find()]

    def expires_by_itself(self) -> bool:
        return "timestamp_ttl" in self._db["activities"].index_information()

    def close(self) -> None:
        self._client.close()


class PostgresView:
    """Each call is one short connection (the tests poll a few times a second at most)."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn

    def _run(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async def query() -> list[asyncpg.Record]:
            connection = await asyncpg.connect(self._dsn)
            try:
                return await connection.fetch(sql, *args)
            except asyncpg.UndefinedTableError:  # the service has not created its schema yet
                return []
            finally:
                await connection.close()

        return _sync(query())

    def ids(self) -> list[str]:
        return [r["id"] for r in self._run("SELECT id FROM activities")]

    def keys(self) -> list[str]:
        return [
            Entry(r["tenant"], r["id"], None, {}).key for r in self._run("SELECT tenant, id FROM activities")
        ]

    def entries(self) -> list[Entry]:
        rows = self._run("SELECT tenant, id, source, metadata::text AS metadata FROM activities")
        return [Entry(r["tenant"], r["id"], r["source"], json.loads(r["metadata"])) for r in rows]

    def count(self) -> int:
        rows = self._run("SELECT count(*) AS n FROM activities")
        return int(rows[0]["n"]) if rows else 0

    def has(self, event_id: str) -> bool:
        return bool(self._run("SELECT 1 FROM activities WHERE id = $1", event_id))

    def metadata(self) -> list[dict[str, Any]]:
        return [
            json.loads(r["metadata"]) for r in self._run("SELECT metadata::text AS metadata FROM activities")
        ]

    def times_and_actions(self) -> list[tuple[datetime, str]]:
        return [
            (r["timestamp"], r["action"]) for r in self._run('SELECT "timestamp", action FROM activities')
        ]

    def events(self) -> list[Event]:
        rows = self._run("SELECT tenant, id, user_id, received_at, ip_address FROM activities")
        return [Event(r["tenant"], r["id"], r["user_id"], r["received_at"], r["ip_address"]) for r in rows]

    def delete(self, event_ids: Sequence[str]) -> None:
        self._run("DELETE FROM activities WHERE id = ANY($1::text[])", list(event_ids))

    def dead_letters(self) -> dict[str, str | None]:
        return {r["source"]: r["event_id"] for r in self._run("SELECT source, event_id FROM dead_letters")}

    def add_dead_letter(self, source: str, event_id: str, error_type: str) -> None:
        self._run(
            "INSERT INTO dead_letters (source, event_id, error_type, reason, at)"
            " VALUES ($1, $2, $3, '', now())",
            source,
            event_id,
            error_type,
        )

    def dead_letter_users(self) -> list[tuple[str | None, str | None]]:
        return [(r["tenant"], r["user_id"]) for r in self._run("SELECT tenant, user_id FROM dead_letters")]

    def expires_by_itself(self) -> bool:
        return False

    def close(self) -> None:
        return None


def _sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Runs ``coroutine`` to its end from synchronous code, also when called inside an event loop (an
    async test): on a thread of its own, with a loop of its own."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result()
