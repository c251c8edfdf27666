"""How an activity is kept in MongoDB: one document per event, camelCase fields, BSON dates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from activity_service.domain.activity import DEFAULT_TENANT, Activity
from activity_service.domain.delivery import LogPosition

Document = dict[str, Any]
SOURCE = "src"
"""Storage only: the log position (``topic:partition:offset``) the event was first stored from."""


FINGERPRINT = "fp"


def storage_id(tenant: str, event_id: str) -> str:
    """``_id``: the event id, prefixed by its tenant unless the tenant is the default one (so events
    stored before tenants keep theirs). Neither names nor ids hold a '/': no two events share one."""
    return event_id if tenant == DEFAULT_TENANT else f"{tenant}/{event_id}"


def to_document(activity: Activity, position: LogPosition | None = None) -> Document:
    """The stored shape: ``_id`` is the tenant's event id (storage_id: so storing is idempotent per
    tenant), times are BSON dates; ``src`` is where in the log it was read from, when known (for exact
    counts: counts.py); ``fp`` the content fingerprint of a client-chosen id (for conflicts)."""
    document: Document = {
        "_id": storage_id(activity.tenant, activity.id),
        "tenant": activity.tenant,
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
    if activity.source is not None:
        document["source"] = activity.source
    if activity.fingerprint is not None:
        document[FINGERPRINT] = activity.fingerprint
    if position is not None:
        document[SOURCE] = str(position)
    return document


def from_document(document: Mapping[str, Any]) -> Activity:
    """What was stored, as it was stored: no input rule is applied again (see Activity.restore)."""
    tenant = document.get("tenant", DEFAULT_TENANT)
    stored_id: str = document["_id"]
    return Activity.restore(
        id=stored_id if tenant == DEFAULT_TENANT else stored_id.removeprefix(f"{tenant}/"),
        tenant=tenant,
        source=document.get("source"),
        fingerprint=document.get(FINGERPRINT),
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
