import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from enum import IntEnum

import pytest

from activity_service.domain.activity import (
    MAX_ACTION_LENGTH,
    MAX_USER_ID_LENGTH,
    Activity,
    content_fingerprint,
)
from activity_service.domain.errors import FieldError, InvalidActivity
from activity_service.domain.ids import event_id_problem, uuid7_time
from activity_service.domain.metadata import _plain, _walk, metadata_problems
from activity_service.infrastructure.system import Uuid7Ids

RECEIVED = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)


def record(**overrides: object) -> Activity:
    fields: dict[str, object] = {"id": "evt-1", "user_id": "u1", "action": "login", "received_at": RECEIVED}
    fields.update(overrides)
    return Activity.record(**fields)  # type: ignore[arg-type]


def fields_of(exc: pytest.ExceptionInfo[InvalidActivity]) -> set[str]:
    return {e.field for e in exc.value.errors}


class _Huge(IntEnum):
    VALUE = 2**64


def test_timestamp_defaults_to_time_received() -> None:
    activity = record()
    assert activity.timestamp == RECEIVED
    assert activity.original_timestamp is None
    assert activity.metadata == {}


def test_times_become_utc_with_millisecond_precision() -> None:
    plus_two = timezone(timedelta(hours=2))
    activity = record(timestamp=datetime(2026, 11, 26, 11, 0, 0, 123456, tzinfo=plus_two))
    assert activity.timestamp == datetime(2026, 11, 26, 9, 0, 0, 123000, tzinfo=UTC)
    naive = record(timestamp=datetime(2026, 1, 1, 0, 0))
    assert naive.timestamp.tzinfo is UTC


def test_sent_at_corrects_the_client_clock_and_keeps_the_original() -> None:
    # The client's clock is 1 hour fast: it says it sent at 11:00 what happened 5 s earlier.
    activity = record(
        timestamp=datetime(2026, 11, 26, 10, 59, 55, tzinfo=UTC),
        sent_at=datetime(2026, 11, 26, 11, 0, tzinfo=UTC),
    )
    assert activity.timestamp == RECEIVED - timedelta(seconds=5)
    assert activity.original_timestamp == datetime(2026, 11, 26, 10, 59, 55, tzinfo=UTC)
    assert activity.sent_at == datetime(2026, 11, 26, 11, 0, tzinfo=UTC)


def test_sent_at_alone_changes_nothing() -> None:
    activity = record(sent_at=datetime(2026, 11, 26, 11, 0, tzinfo=UTC))
    assert activity.timestamp == RECEIVED
    assert activity.original_timestamp is None


def test_every_offending_field_is_named_at_once() -> None:
    with pytest.raises(InvalidActivity) as exc:
        record(id="", user_id="  ", action="x" * (MAX_ACTION_LENGTH + 1))
    assert fields_of(exc) == {"id", "userId", "action"}


def test_user_id_is_bounded() -> None:
    record(user_id="u" * MAX_USER_ID_LENGTH)
    with pytest.raises(InvalidActivity) as exc:
        record(user_id="u" * (MAX_USER_ID_LENGTH + 1))
    assert fields_of(exc) == {"userId"}


def test_far_future_timestamps_are_refused_a_little_skew_is_not() -> None:
    record(timestamp=RECEIVED + timedelta(hours=23))
    with pytest.raises(InvalidActivity) as exc:
        record(timestamp=RECEIVED + timedelta(hours=25))
    assert fields_of(exc) == {"timestamp"}


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"$where": 1}, "metadata.$where"),
        ({"a.b": 1}, "metadata.a.b"),
        ({"ok": {"deep": {"$gt": ""}}}, "metadata.ok.deep.$gt"),
        ({"list": [{"x\x00": 1}]}, "metadata.list[0].x\x00"),
        ({"": 1}, "metadata."),
        ({"n": 2**64}, "metadata.n"),
    ],
)
def test_metadata_keys_that_break_mongodb_stores_are_refused_at_any_depth(
    metadata: object, field: str
) -> None:
    with pytest.raises(InvalidActivity) as exc:
        record(metadata=metadata)
    assert fields_of(exc) == {field}


def test_metadata_depth_is_bounded() -> None:
    deep: dict[str, object] = {"leaf": 1}
    for _ in range(10):
        deep = {"d": deep}
    with pytest.raises(InvalidActivity) as exc:
        record(metadata=deep)
    assert any("deeper" in e.message for e in exc.value.errors)


def test_metadata_may_hold_any_json() -> None:
    metadata = {"s": "x", "n": 1, "f": 1.5, "b": True, "none": None, "list": [1, "a", {"k": [2]}]}
    assert record(metadata=metadata).metadata == metadata


@pytest.mark.parametrize(
    "metadata",
    [
        {},
        {"s": "x", "n": -(2**63), "m": 2**63 - 1, "f": 1.5, "b": False, "none": None, "l": [[], {}, [1]]},
        {"n": 2**63},
        {"list": [1, {"ok": [{"$in": 1}]}]},
        {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}},
        {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}},
        {"a": [[[[[[[1]]]]]]]},
        {"a": [[[[[[[[1]]]]]]]]},
        {"k" * 256: 1, "x": "\x00 in a value is fine"},
        {"k" * 257: 1},
        {"bytes": b"x"},
        {"tuple": (1, 2)},
        {"enum": _Huge.VALUE},  # an int subclass: `in range(...)` would scan 2**63 values for it
        {1: "not a str key"},
        {"x\x00": 1},
        {" ": 1, "a$": 1},
    ],
)
def test_the_fast_metadata_check_agrees_with_the_one_that_names_the_problems(
    metadata: dict[object, object],
) -> None:
    # Every event takes the fast path (_plain); only when it finds something does _walk name it.
    errors: list[FieldError] = []
    _walk(metadata, "metadata", 1, errors)
    assert _plain(metadata, 1) == (not errors)
    assert metadata_problems(metadata) == errors


def test_metadata_must_be_an_object() -> None:
    with pytest.raises(InvalidActivity) as exc:
        record(metadata=[1, 2])
    assert fields_of(exc) == {"metadata"}


@pytest.mark.parametrize("bad", ["", "a" * 129, "has space", "slash/y", "-leading", "q?x", "é"])
def test_event_ids_are_bounded_and_safe(bad: str) -> None:
    assert event_id_problem(bad) is not None


@pytest.mark.parametrize("good", ["a", "A-1_b.c:d", "0" * 128, "01936a8e-5f7c-7d3e-9a1b-2c4d6e8f0a1b"])
def test_usual_event_ids_are_fine(good: str) -> None:
    assert event_id_problem(good) is None


def test_server_ids_are_uuid7_in_creation_order_even_within_one_millisecond() -> None:
    ids = [Uuid7Ids().new_id() for _ in range(5000)]  # far more than one millisecond holds
    assert all(event_id_problem(i) is None for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    created = uuid7_time(ids[0])
    assert created is not None
    assert abs(created - datetime.now(UTC)) < timedelta(seconds=5)


def test_the_time_of_an_id_that_is_not_a_readable_uuid7_is_unknown() -> None:
    assert uuid7_time("not-a-uuid") is None
    assert uuid7_time("01936a8e-5f7c-4d3e-9a1b-2c4d6e8f0a1b") is None  # version 4
    assert uuid7_time("ffffffff-ffff-7fff-bfff-ffffffffffff") is None  # its time is past the year 9999


def test_a_trace_id_is_32_lowercase_hex_digits() -> None:
    assert record(trace_id="0af7651916cd43dd8448eb211c80319c").trace_id == "0af7651916cd43dd8448eb211c80319c"
    for bad in ("0AF7651916CD43DD8448EB211C80319C", "abc", "g" * 32):
        with pytest.raises(InvalidActivity) as exc:
            record(trace_id=bad)
        assert fields_of(exc) == {"traceId"}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"timestamp": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))}, "timestamp"),
        ({"sent_at": datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-14)))}, "sentAt"),
        ({"timestamp": datetime(1, 1, 2, tzinfo=UTC), "sent_at": datetime(9999, 1, 1, tzinfo=UTC)}, "sentAt"),
        ({"ip_address": 12345}, "ipAddress"),
        ({"trace_id": 5}, "traceId"),
        ({"user_id": 0}, "userId"),  # not from JSON (the schemas give a str), but Activity is public
        ({"action": 7}, "action"),
    ],
)
def test_values_outside_what_can_be_represented_are_invalid_not_crashes(
    fields: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidActivity) as exc:
        record(**fields)
    assert fields_of(exc) == {field}


def test_fingerprints_are_the_canonical_json_they_always_were() -> None:
    """Fingerprints are stored and compared with resends' across releases: the canonical form must not
    drift (json.dumps with sorted keys, no spaces, UTF-8 as is), nor the digest of a known event."""
    metadata = {"b": [1, 2.5, None, True], "a": {"é": "ü ✓", "z": -3, "ctl": '\x1f"'}}
    when = datetime(2026, 11, 26, 10, 0, 0, 123000, tzinfo=UTC)
    canonical = json.dumps(
        ["user-42", "page_view", metadata, when.isoformat()],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    expected = hashlib.sha256(canonical.encode()).hexdigest()[:32]
    assert content_fingerprint("user-42", "page_view", metadata, when) == expected
    known = {"b": [1, 2.5, None, True], "a": {"é": "ü ✓", "z": -3}}
    assert content_fingerprint("user-42", "page_view", known, when) == "49732c47f8125daf50f65cb31f11fd1a"
