"""How an activity is kept in PostgreSQL: one row per event keyed by (tenant, id), snake_case columns,
jsonb metadata."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

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


def columns_of(activities: Sequence[Activity]) -> list[list[Any]]:
    """The batch as one list per column (what ``unnest`` takes: one round trip for any batch size)."""
    return [
        [a.tenant for a in activities],
        [a.id for a in activities],
        [a.user_id for a in activities],
        [a.action for a in activities],
        [a.timestamp for a in activities],
        [a.received_at for a in activities],
        [a.metadata for a in activities],
        [a.ip_address for a in activities],
        [a.original_timestamp for a in activities],
        [a.sent_at for a in activities],
        [a.trace_id for a in activities],
        [a.source for a in activities],
        [a.fingerprint for a in activities],
    ]


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
