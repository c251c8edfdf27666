"""The real clock and id source."""

from __future__ import annotations

from datetime import UTC, datetime

import uuid_utils


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class Uuid7Ids:
    """UUIDv7 (RFC 9562) from uuid-utils: 48 bits of Unix milliseconds, then a counter that keeps ids made
    within one millisecond in order, then randomness. ~0.5 µs an id (the hand-written one took 2.6)."""

    def new_id(self) -> str:
        return str(uuid_utils.uuid7())
