"""How an activity is kept in MongoDB: one document per event, camelCase fields, BSON dates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from activity_service.domain.activity import Activity
from activity_service.domain.delivery import LogPosition

Document = dict[str, Any]
SOURCE = "src"
"""Storage only: the log position (``topic:partition:offset``) the event was first stored from."""


def to_document(activity: Activity, position: LogPosition | None = None) -> Document:
    """The stored shape: ``_id`` is the event id (so storing is idempotent), times are BSON dates;
    ``src`` is where in the log it was read from, when known (for exact counts: counts.py)."""
    document: Document = {
        "_id": activity.id,
        "userId": activity.user_id,
        "action": activity.action,
        "timestamp": activity.timestamp,
        "metadata": dict(activity.metadata),
        "ipAddress": activity.ip_address,
        "receivedAt": activity.received_at,
    }
    if activity.original_timestamp is not None:
        document["originalTimestamp"] = activity.original_timestamp
    if activity.sent_at is not None:
        document["sentAt"] = activity.sent_at
    if activity.trace_id is not None:
        document["traceId"] = activity.trace_id
    if position is not None:
        document[SOURCE] = str(position)
    return document


def from_document(document: Mapping[str, Any]) -> Activity:
    """What was stored, as it was stored: no input rule is applied again (see Activity.restore)."""
    return Activity.restore(
        id=document["_id"],
        user_id=document["userId"],
        action=document["action"],
        timestamp=document["timestamp"],
        received_at=document["receivedAt"],
        metadata=document.get("metadata") or {},
        ip_address=document.get("ipAddress"),
        original_timestamp=document.get("originalTimestamp"),
        sent_at=document.get("sentAt"),
        trace_id=document.get("traceId"),
    )
