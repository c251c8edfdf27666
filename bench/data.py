"""What the bench sends and stores: valid activities, encoded by the service's own codec.

Building and encoding a million Activity objects one by one costs ~40 s of the bench's budget, so the
messages come from a thousand encoded templates (different users, actions, timestamps) into which each
event's id is substituted. Every message is still exactly what `codec.encode` produces for a valid
activity with that id: the consumer cannot tell the difference.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from activity_service.domain.activity import Activity
from activity_service.infrastructure.kafka.codec import decode, encode
from activity_service.infrastructure.mongo.documents import to_document
from activity_service.infrastructure.postgres.rows import rows_json

ACTIONS = ("page_view", "click", "login", "purchase", "logout")
_PLACEHOLDER = "bench-id-placeholder-000000000000000"  # 36 characters, as long as a UUIDv7
TEMPLATES = 1000


def event_id(tag: str, n: int) -> str:
    """36 characters like the UUIDv7 the API assigns; increasing with n, as UUIDv7s are with time."""
    return f"{tag[:8]:0>8}-{n:027d}"


def now_millis() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _activity(i: int, id_: str, received: datetime, spread: timedelta) -> Activity:
    return Activity(
        id=id_,
        user_id=f"bench-user-{i % TEMPLATES}",
        action=ACTIONS[i % len(ACTIONS)],
        timestamp=received - spread * (i % TEMPLATES) / TEMPLATES,
        received_at=received,
        metadata={"path": "/pricing", "referrer": "newsletter", "n": i},
        ip_address="127.0.0.1",
    )


class Messages:
    """Kafka messages (key, value) for events 0..n-1 of a run, and the documents they store as."""

    def __init__(self, tag: str, received: datetime | None = None) -> None:
        self.tag = tag
        received = received or now_millis()
        self._templates = [
            (a.user_id.encode(), encode(a).split(_PLACEHOLDER.encode()))
            for a in (_activity(i, _PLACEHOLDER, received, timedelta(hours=1)) for i in range(TEMPLATES))
        ]
        for _, parts in self._templates:
            assert len(parts) == 2, "the id placeholder must appear exactly once in an encoded event"
        # What the consumer stores for each template (decoded from the very bytes it reads).
        decoded = [decode(head + _PLACEHOLDER.encode() + tail) for _, (head, tail) in self._templates]
        self._documents = [to_document(a) for a in decoded]
        self._rows: list[dict[str, Any]] = orjson.loads(rows_json(decoded))
        # The row keys are the columns, in order, each named as the Activity field it holds.
        self._columns = [[getattr(a, name) for a in decoded] for name in self._rows[0]]
        self._id_column = list(self._rows[0]).index("id")

    def message(self, n: int) -> tuple[bytes, bytes]:
        key, (head, tail) = self._templates[n % TEMPLATES]
        return key, head + event_id(self.tag, n).encode() + tail

    def documents(self, start: int, stop: int) -> list[dict[str, Any]]:
        """The documents the consumer stores for events start..stop-1: the same fields, the same id."""
        return [{**self._documents[n % TEMPLATES], "_id": event_id(self.tag, n)} for n in range(start, stop)]

    def rows_json(self, start: int, stop: int) -> str:
        """What the PostgreSQL consumer sends for events start..stop-1 (``rows.rows_json`` of the decoded
        batch): the same values, the same ids."""
        return orjson.dumps(
            [{**self._rows[n % TEMPLATES], "id": event_id(self.tag, n)} for n in range(start, stop)]
        ).decode()

    def columns(self, start: int, stop: int) -> list[list[Any]]:
        """The same rows as one list per column (for ``unnest``)."""
        picks = [n % TEMPLATES for n in range(start, stop)]
        ids = [event_id(self.tag, n) for n in range(start, stop)]
        return [
            ids if c == self._id_column else [column[i] for i in picks]
            for c, column in enumerate(self._columns)
        ]


def query_documents(
    tag: str, start: int, stop: int, newest: datetime, days: int = 30
) -> Iterator[dict[str, Any]]:
    """Stored documents for the query scenario: 1000 users, 5 actions, timestamps spread evenly over
    ``days`` up to ``newest`` (document n is the n-th newest)."""
    step = timedelta(days=days) / max(stop, 1)
    # stop is the total count, so the spread does not depend on how the caller slices the range
    for n in range(start, stop):
        yield to_document(
            Activity(
                id=event_id(tag, n),
                user_id=f"bench-user-{n % TEMPLATES}",
                action=ACTIONS[n % len(ACTIONS)],
                timestamp=newest - step * n,
                received_at=newest,
                metadata={"path": "/pricing", "referrer": "newsletter", "n": n},
                ip_address="127.0.0.1",
            )
        )
