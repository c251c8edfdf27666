"""Event ids: client-chosen ids are checked here; server ids are UUIDv7, so they sort by creation time."""

from __future__ import annotations

import os
import re
import time
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


_MS_MASK = (1 << 48) - 1
_RAND_B_MASK = (1 << 62) - 1


def new_uuid7() -> str:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then randomness."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (
        (ms & _MS_MASK) << 80
        | 0x7 << 76  # version
        | ((rand >> 62) & 0xFFF) << 64  # rand_a
        | 0b10 << 62  # variant
        | rand & _RAND_B_MASK  # rand_b
    )
    # What str(uuid.UUID(int=value)) gives, without building the UUID (ids are made per event).
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7_time(value: str) -> datetime | None:
    """The creation time inside a UUIDv7 id, or None when ``value`` is not one."""
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return None
    if parsed.version != 7:
        return None
    return datetime.fromtimestamp((parsed.int >> 80) / 1000, tz=UTC)
