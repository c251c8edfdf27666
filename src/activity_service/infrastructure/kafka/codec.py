"""The message on the topic: a versioned JSON envelope around one activity.

    {"v": 1, "type": "activity.recorded", "data": {"id", "userId", "action", "timestamp", "receivedAt",
     "metadata", "ipAddress", "originalTimestamp"?, "sentAt"?, "traceId"?}}

Times are ISO-8601 UTC strings. A consumer refuses versions it does not know rather than guessing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from activity_service.domain.activity import Activity
from activity_service.domain.errors import FieldError, InvalidActivity
from activity_service.domain.times import from_iso, to_iso

ENVELOPE_VERSION = 1
EVENT_TYPE = "activity.recorded"


class UndecodableMessage(Exception):
    """The bytes on the topic are not an activity this service can read."""


def _data(activity: Activity) -> dict[str, Any]:
    """The envelope's ``data``: its own shape (the HTTP answer has another, in interfaces/http), so that
    neither can change the other by accident."""
    data: dict[str, Any] = {
        "id": activity.id,
        "userId": activity.user_id,
        "action": activity.action,
        "timestamp": to_iso(activity.timestamp),
        "metadata": activity.metadata,
        "ipAddress": activity.ip_address,
        "receivedAt": to_iso(activity.received_at),
    }
    if activity.original_timestamp is not None:
        data["originalTimestamp"] = to_iso(activity.original_timestamp)
    if activity.sent_at is not None:
        data["sentAt"] = to_iso(activity.sent_at)
    if activity.trace_id is not None:
        data["traceId"] = activity.trace_id
    return data


def encode(activity: Activity) -> bytes:
    return orjson.dumps({"v": ENVELOPE_VERSION, "type": EVENT_TYPE, "data": _data(activity)})


def decode(raw: bytes | None) -> Activity:
    """Raises UndecodableMessage (bad bytes, unknown version) or InvalidActivity (breaks an invariant)."""
    if raw is None:
        raise UndecodableMessage("message has no value")
    try:
        envelope = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UndecodableMessage(f"not JSON: {exc}") from exc
    if not isinstance(envelope, dict) or envelope.get("v") != ENVELOPE_VERSION:
        raise UndecodableMessage(f"not a version {ENVELOPE_VERSION} envelope")
    if envelope.get("type") != EVENT_TYPE or not isinstance(envelope.get("data"), dict):
        raise UndecodableMessage(f"not an {EVENT_TYPE} event")
    data: dict[str, Any] = envelope["data"]
    try:
        return Activity(
            id=_str(data, "id"),
            user_id=_str(data, "userId"),
            action=_str(data, "action"),
            timestamp=from_iso(_str(data, "timestamp")),
            received_at=from_iso(_str(data, "receivedAt")),
            metadata=data.get("metadata", {}),
            ip_address=data.get("ipAddress"),
            original_timestamp=_optional_time(data, "originalTimestamp"),
            sent_at=_optional_time(data, "sentAt"),
            trace_id=data.get("traceId"),
        )
    except (ValueError, TypeError, OverflowError) as exc:  # a time that does not parse, a wrong type
        raise InvalidActivity([FieldError("data", f"{type(exc).__name__}: {exc}")]) from exc


def event_id_of(raw: bytes | None) -> str | None:
    """The event id a message carries, if it is readable enough to tell (for dead-letter records)."""
    try:
        envelope = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        return None
    data = envelope.get("data") if isinstance(envelope, dict) else None
    event_id = data.get("id") if isinstance(data, dict) else None
    return event_id if isinstance(event_id, str) and len(event_id) <= 256 else None


def _str(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise InvalidActivity([FieldError(key, "must be a string")])
    return value


def _optional_time(data: dict[str, Any], key: str) -> datetime | None:
    value = data.get(key)
    return None if value is None else from_iso(_str(data, key))
