"""Event ids: client-chosen ids are checked here; server ids are UUIDv7 (made by an IdGenerator), so they
sort by creation time, and that time can be read back from them."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

MAX_EVENT_ID_LENGTH = 128
# Letters, digits and a few separators: safe in URLs, Kafka headers, logs and as a MongoDB _id.
EVENT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


def event_id_problem(value: str) -> str | None:
    """Why ``value`` cannot be an event id, or None when it can."""
    if not value:
        return "must not be empty"
    if len(value) > MAX_EVENT_ID_LENGTH:
        return f"must be at most {MAX_EVENT_ID_LENGTH} characters"
    if EVENT_ID_PATTERN.fullmatch(value) is None:
        return "may contain only letters, digits, '-', '_', '.', ':' and must start with a letter or digit"
    return None


def uuid7_time(value: str) -> datetime | None:
    """The creation time inside a UUIDv7 id, or None when ``value`` is not one."""
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return None
    if parsed.version != 7:
        return None
    try:
        return datetime.fromtimestamp((parsed.int >> 80) / 1000, tz=UTC)
    except (OverflowError, ValueError, OSError):  # 48 bits of milliseconds reach past the year 9999
        return None
