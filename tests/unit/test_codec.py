from datetime import UTC, datetime

import orjson
import pytest

from activity_service.domain.activity import Activity
from activity_service.domain.errors import InvalidActivity
from activity_service.infrastructure.kafka.codec import UndecodableMessage, decode, encode


def test_an_activity_survives_the_round_trip() -> None:
    activity = Activity.record(
        id="e1",
        user_id="u1",
        action="buy",
        received_at=datetime(2026, 11, 26, 10, 0, 0, 123000, tzinfo=UTC),
        timestamp=datetime(2026, 11, 26, 9, 0, tzinfo=UTC),
        sent_at=datetime(2026, 11, 26, 9, 0, 1, tzinfo=UTC),
        metadata={"cart": [{"sku": "a", "qty": 2}], "total": 9.5},
        ip_address="203.0.113.9",
    )
    assert decode(encode(activity)) == activity
    envelope = orjson.loads(encode(activity))
    assert envelope["v"] == 1
    assert envelope["data"]["timestamp"] == "2026-11-26T09:59:59.123Z"
    assert envelope["data"]["originalTimestamp"] == "2026-11-26T09:00:00.000Z"


def test_times_before_year_1000_keep_four_digits() -> None:
    # strftime("%Y") writes year 5 as "5", which no ISO-8601 reader accepts. The API no longer accepts
    # such a time (EARLIEST_TIMESTAMP), but an event stored before that rule still reads and encodes.
    stored = Activity.restore(
        id="e1",
        user_id="u1",
        action="buy",
        received_at=datetime(2026, 11, 26, 10, tzinfo=UTC),
        timestamp=datetime(5, 1, 2, 3, 4, 5, 6000, tzinfo=UTC),
    )
    assert orjson.loads(encode(stored))["data"]["timestamp"] == "0005-01-02T03:04:05.006Z"
    with pytest.raises(InvalidActivity, match="before 2000-01-01"):
        decode(encode(stored))


@pytest.mark.parametrize(
    "raw",
    [None, b"\x00\xff garbage", b"[]", b'{"v": 2, "type": "activity.recorded", "data": {}}', b'{"v": 1}'],
)
def test_bytes_that_are_not_an_envelope_are_undecodable(raw: bytes | None) -> None:
    with pytest.raises(UndecodableMessage):
        decode(raw)


def test_an_envelope_breaking_an_invariant_is_invalid() -> None:
    raw = orjson.dumps(
        {
            "v": 1,
            "type": "activity.recorded",
            "data": {
                "id": "e1",
                "userId": "",
                "action": "a",
                "timestamp": "2026-01-01T00:00:00Z",
                "receivedAt": 5,
            },
        }
    )
    with pytest.raises(InvalidActivity):
        decode(raw)


@pytest.mark.parametrize(
    "data",
    [
        {"traceId": 5},
        {"timestamp": "0001-01-01T00:00:00+14:00"},
        {"ipAddress": 12345},
    ],
)
def test_fields_of_the_wrong_type_or_range_are_invalid(data: dict[str, object]) -> None:
    base = {
        "id": "e1",
        "userId": "u",
        "action": "a",
        "timestamp": "2026-01-01T00:00:00Z",
        "receivedAt": "2026-01-01T00:00:00Z",
    }
    raw = orjson.dumps({"v": 1, "type": "activity.recorded", "data": {**base, **data}})
    with pytest.raises(InvalidActivity):
        decode(raw)
