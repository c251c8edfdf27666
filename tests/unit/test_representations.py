"""One definition of an activity's fields (the Activity dataclass), and a shape of its own at each boundary:
the Kafka envelope, the MongoDB document, the HTTP answer. Each round-trips every field, so a field added
to Activity and forgotten at a boundary fails here."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta

from activity_service.domain.activity import Activity
from activity_service.infrastructure.kafka.codec import decode, encode
from activity_service.infrastructure.mongo.documents import from_document, to_document
from activity_service.interfaces.http.schemas.reads import ActivityOut, activity_out

NOW = datetime(2026, 11, 26, 10, 0, 0, 123000, tzinfo=UTC)

# Every field set to something other than its default.
FULL = Activity.record(
    id="evt-1",
    user_id="user-1",
    action="page_view",
    received_at=NOW,
    timestamp=NOW - timedelta(minutes=5),
    sent_at=NOW - timedelta(minutes=4),
    metadata={"path": "/pricing", "n": 3, "nested": {"list": [1, "two", None]}},
    ip_address="198.51.100.4",
    trace_id="0af7651916cd43dd8448eb211c80319c",
    tenant="acme",
    source="ingest-key",
    chosen_id=True,
)
# Not in the HTTP answer: the tenant is the reader's own, the fingerprint is the store's business.
NOT_SHOWN = {"tenant", "fingerprint"}


def test_the_full_example_sets_every_field() -> None:
    defaults = [f.name for f in fields(Activity) if getattr(FULL, f.name) in (None, {})]
    assert defaults == [], "set these in FULL so that every boundary is checked for them"


def test_the_kafka_envelope_carries_every_field() -> None:
    assert decode(encode(FULL)) == FULL


def test_the_stored_document_keeps_every_field() -> None:
    assert from_document(to_document(FULL)) == FULL
    assert to_document(FULL)["_id"] == "acme/evt-1"  # ids are unique per tenant


def test_the_http_answer_shows_every_field_as_documented() -> None:
    out = activity_out(FULL)
    assert set(out) == set(ActivityOut.model_fields)
    assert len(out) == len(fields(Activity)) - len(NOT_SHOWN)
    assert out["timestamp"] == "2026-11-26T09:59:00.123Z" and out["receivedAt"] == "2026-11-26T10:00:00.123Z"
    assert ActivityOut.model_validate(out).userId == "user-1"


def test_a_stored_activity_reads_back_even_if_the_input_rules_got_stricter() -> None:
    # Stored long ago under looser rules: a userId far over today's limit, metadata today's rules refuse.
    old = {**to_document(FULL), "userId": "u" * 10_000, "metadata": {"$legacy": 1}}
    restored = from_document(old)
    assert restored.user_id == "u" * 10_000 and restored.metadata == {"$legacy": 1}
