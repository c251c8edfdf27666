"""The real clock and id source."""

from __future__ import annotations

from datetime import UTC, datetime

from activity_service.domain.ids import new_uuid7


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class Uuid7Ids:
    def new_id(self) -> str:
        return new_uuid7()
