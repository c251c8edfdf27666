"""How an activity is kept in PostgreSQL: one row per event keyed by (tenant, id), snake_case columns,
jsonb metadata."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import orjson

from activity_service.domain.activity import Activity

COLUMNS = (
    "tenant",
    "id",
    "user_id",
    "action",
    '"timestamp"',
    "received_at",
    "metadata",
    "ip_address",
    "original_timestamp",
    "sent_at",
    "trace_id",
    "source",
    "fingerprint",
)
TYPES = (
    "text",
    "text",
    "text",
    "text",
    "timestamptz",
    "timestamptz",
    "jsonb",
    "text",
    "timestamptz",
    "timestamptz",
    "text",
    "text",
    "text",
)
SELECT = ", ".join(COLUMNS)


# Column names and types, for json_to_recordset (a quoted name is the same key in the JSON rows).
RECORD = ", ".join(f"{name} {type_}" for name, type_ in zip(COLUMNS, TYPES, strict=True))


def rows_json(activities: Sequence[Activity]) -> str:
    """The batch as one JSON array of rows keyed by column, what ``json_to_recordset`` reads: one
    parameter for any batch size. Measured against one array per column (``unnest``), it costs the
    consumer a third of the CPU (asyncpg inspects every element of an array parameter) and the database
    the same. Times are ISO 8601 with their UTC offset; orjson.JSONEncodeError (a TypeError) for a value
    JSON cannot hold."""
    return orjson.dumps(
        [
            {
                "tenant": a.tenant,
                "id": a.id,
                "user_id": a.user_id,
                "action": a.action,
                "timestamp": a.timestamp,
                "received_at": a.received_at,
                "metadata": a.metadata,
                "ip_address": a.ip_address,
                "original_timestamp": a.original_timestamp,
                "sent_at": a.sent_at,
                "trace_id": a.trace_id,
                "source": a.source,
                "fingerprint": a.fingerprint,
            }
            for a in activities
        ]
    ).decode()


def from_row(row: asyncpg.Record) -> Activity:
    """What was stored, as it was stored: no input rule is applied again (see Activity.restore)."""
    return Activity.restore(
        tenant=row["tenant"],
        id=row["id"],
        user_id=row["user_id"],
        action=row["action"],
        timestamp=row["timestamp"],
        received_at=row["received_at"],
        metadata=row["metadata"],
        ip_address=row["ip_address"],
        original_timestamp=row["original_timestamp"],
        sent_at=row["sent_at"],
        trace_id=row["trace_id"],
        source=row["source"],
        fingerprint=row["fingerprint"],
    )
