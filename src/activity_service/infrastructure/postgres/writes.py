"""How events and their counts are written and removed together on PostgreSQL: one statement each, so
one transaction, whatever the batch size (the batch is one JSON parameter: one round trip)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import asyncpg

from activity_service.domain.activity import Activity, EventKey
from activity_service.infrastructure.postgres.rows import COLUMNS, RECORD, rows_json

# The counts per minute, hour and day move in the same statement as the events they count (one
# transaction): only rows really inserted are counted, and a redelivered batch counts nothing twice.
# Count rows are locked in key order, so concurrent consumers cannot deadlock on them. ``stored`` reads
# the statement's snapshot, from before the insert: the fingerprints of the events the batch's
# fingerprinted ones may repeat (a duplicate with another fingerprint is a conflict, see conflicts_of).
GRANULARITIES = "(VALUES ('minute'), ('hour'), ('day')) AS g (granularity)"
INSERT = (
    f"WITH batch AS MATERIALIZED (SELECT * FROM json_to_recordset($1::json) AS b ({RECORD})"
    "), inserted AS ("
    f" INSERT INTO activities ({', '.join(COLUMNS)}) SELECT * FROM batch"
    ' ON CONFLICT (tenant, id) DO NOTHING RETURNING tenant, id, action, "timestamp", fingerprint'
    "), counted AS ("
    " INSERT INTO activity_counts (tenant, granularity, bucket, action, total)"
    " SELECT i.tenant, g.granularity, date_trunc(g.granularity, i.\"timestamp\", 'UTC'), i.action, count(*)"
    f" FROM inserted i CROSS JOIN {GRANULARITIES} GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
    " ON CONFLICT (tenant, granularity, bucket, action)"
    " DO UPDATE SET total = activity_counts.total + EXCLUDED.total"
    "), stored AS ("
    " SELECT a.tenant, a.id, a.fingerprint FROM activities a"
    " WHERE (a.tenant, a.id) IN (SELECT tenant, id FROM batch WHERE fingerprint IS NOT NULL)"
    ") SELECT true AS inserted, tenant, id, fingerprint FROM inserted"
    " UNION ALL SELECT false, tenant, id, fingerprint FROM stored"
)
FINGERPRINTS = (
    "SELECT tenant, id, fingerprint FROM activities"
    " WHERE (tenant, id) IN (SELECT * FROM unnest($1::text[], $2::text[]))"
)


def removing(delete: str) -> str:
    """One statement that runs ``delete`` (a DELETE from activities returning tenant, action and
    "timestamp") and takes what it removed out of the counts (one transaction); it answers how many.
    Count rows are left at 0 rather than deleted (a reader skips them; retention drops them): deciding
    that here could race a consumer counting into the same row."""
    return (
        f"WITH gone AS ({delete}), uncounted AS ("
        " UPDATE activity_counts c SET total = c.total - d.n FROM ("
        "  SELECT x.tenant, g.granularity, date_trunc(g.granularity, x.\"timestamp\", 'UTC') AS bucket,"
        "   x.action, count(*) AS n"
        f"  FROM gone x CROSS JOIN {GRANULARITIES} GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4) d"
        " WHERE c.tenant = d.tenant AND c.granularity = d.granularity AND c.bucket = d.bucket"
        " AND c.action = d.action"
        ") SELECT count(*) FROM gone"
    )


# Retention walks each tenant's time index (every index leads with the tenant).
PURGE = removing(
    "DELETE FROM activities WHERE tenant = $1 AND id IN ("
    ' SELECT id FROM activities WHERE tenant = $1 AND "timestamp" < $2 ORDER BY "timestamp" LIMIT $3)'
    ' RETURNING tenant, action, "timestamp"'
)
# The tenants that hold events, one index probe each (a loose index scan: PostgreSQL has no skip scan).
TENANTS = (
    "WITH RECURSIVE t AS ("
    " (SELECT tenant FROM activities ORDER BY tenant LIMIT 1)"
    " UNION ALL"
    " SELECT (SELECT a.tenant FROM activities a WHERE a.tenant > t.tenant ORDER BY a.tenant LIMIT 1)"
    " FROM t WHERE t.tenant IS NOT NULL"
    ") SELECT tenant FROM t WHERE tenant IS NOT NULL"
)
# Along the user index (tenant, user_id, ...): nearly every row it reads is one to remove.
ERASE = removing(
    "DELETE FROM activities WHERE tenant = $1 AND user_id = $2 AND received_at < $3"
    ' RETURNING tenant, action, "timestamp"'
)


async def insert(
    connection: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy, activities: Sequence[Activity]
) -> tuple[int, list[EventKey]]:
    """Stores the batch (INSERT): how many it inserted, and which of the rest are conflicts.
    asyncpg.DataError or Unencodable: a value the database (or JSON) cannot hold."""
    try:
        batch = rows_json(activities)
    except TypeError as exc:  # orjson.JSONEncodeError: only this, not any TypeError of the driver
        raise Unencodable(str(exc)) from exc
    rows = await connection.fetch(INSERT, batch)
    inserted = {(r["tenant"], r["id"]): r["fingerprint"] for r in rows if r["inserted"]}
    stored = {(r["tenant"], r["id"]): r["fingerprint"] for r in rows if not r["inserted"]}
    # A fingerprinted duplicate of an event neither this statement nor its snapshot saw: another writer
    # stored it meanwhile (the insert waited for it to commit). Read it now, committed (rare).
    unseen = {
        a.key
        for a in activities
        if a.fingerprint is not None and a.key not in inserted and a.key not in stored
    }
    if unseen:
        tenants, ids = zip(*unseen, strict=True)
        found = await connection.fetch(FINGERPRINTS, list(tenants), list(ids))
        stored.update({(r["tenant"], r["id"]): r["fingerprint"] for r in found})
    return len(inserted), conflicts_of(activities, inserted, stored)


class Unencodable(ValueError):
    """A batch holding a value JSON cannot carry (e.g. a lone surrogate in a string)."""


def conflicts_of(
    activities: Sequence[Activity],
    inserted: Mapping[EventKey, str | None],
    stored: Mapping[EventKey, str | None],
) -> list[EventKey]:
    """The fingerprinted duplicates whose fingerprint differs from the stored event's, or whose stored
    event has none (the server named it: nothing says it is the same event). ``inserted``: the
    fingerprints this batch stored (the first record of each with that key and fingerprint is the one
    that stored it; a later one repeats it); ``stored``: those of events stored before."""
    conflicts: list[EventKey] = []
    placed: set[EventKey] = set()
    for activity in activities:
        key = activity.key
        if key in inserted and key not in placed and activity.fingerprint == inserted[key]:
            placed.add(key)
            continue
        if activity.fingerprint is None or (key not in inserted and key not in stored):
            continue  # a record that says nothing of its content, or one whose event is gone meanwhile
        kept = inserted[key] if key in inserted else stored[key]
        if kept != activity.fingerprint:
            conflicts.append(key)
    return conflicts
