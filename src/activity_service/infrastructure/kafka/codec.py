"""The message on the topic: a versioned JSON envelope around one activity.

    {"v": 1, "type": "activity.recorded", "data": {"id", "userId", "action", "timestamp", "receivedAt",
     "metadata", "ipAddress", "originalTimestamp"?, "sentAt"?, "traceId"?, "tenant"?, "source"?,
     "fingerprint"?}}

A message without ``tenant`` belongs to the default tenant (as every message written before tenants).

Times are ISO-8601 UTC strings. A consumer refuses versions it does not know rather than guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from activity_service.domain.activity import DEFAULT_TENANT, Activity
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
    if activity.tenant != DEFAULT_TENANT:
        data["tenant"] = activity.tenant
    if activity.source is not None:
        data["source"] = activity.source
    if activity.fingerprint is not None:
        data["fingerprint"] = activity.fingerprint
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
            tenant=data.get("tenant", DEFAULT_TENANT),  # messages from before tenants: the default one
            source=data.get("source"),
            fingerprint=data.get("fingerprint"),
        )
    except (ValueError, TypeError, OverflowError) as exc:  # a time that does not parse, a wrong type
        raise InvalidActivity([FieldError("data", f"{type(exc).__name__}: {exc}")]) from exc


@dataclass(frozen=True, slots=True)
class Identity:
    """Whose event a message is, as far as it is readable (for the dead-letter record of one that is not)."""

    event_id: str | None = None
    tenant: str | None = None
    user_id: str | None = None


def identity_of(raw: bytes | None) -> Identity:
    try:
        envelope = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        return Identity()
    data = envelope.get("data") if isinstance(envelope, dict) else None
    if not isinstance(data, dict):
        return Identity()
    return Identity(
        _short(data.get("id")), _short(data.get("tenant", DEFAULT_TENANT)), _short(data.get("userId"))
    )


def event_id_of(raw: bytes | None) -> str | None:
    """The event id a message carries, if it is readable enough to tell."""
    return identity_of(raw).event_id


def _short(value: object) -> str | None:
    return value if isinstance(value, str) and len(value) <= 256 else None


def _str(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise InvalidActivity([FieldError(key, "must be a string")])
    return value


def _optional_time(data: dict[str, Any], key: str) -> datetime | None:
    value = data.get(key)
    return None if value is None else from_iso(_str(data, key))
