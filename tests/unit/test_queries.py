"""Keyset pagination, freshness and event status, against in-memory fakes."""

from datetime import UTC, datetime, timedelta

import pytest

from activity_service.application.get_event_status import EventStatus, GetEventStatus
from activity_service.application.read_freshness import ReadFreshness
from activity_service.domain.activity import Activity
from activity_service.domain.delivery import DeadLetter, PartitionProgress
from activity_service.domain.query import ActivityQuery, InvalidQuery, Position
from activity_service.infrastructure.system import Uuid7Ids
from activity_service.interfaces.http.cursor import decode_cursor, encode_cursor
from tests.fakes import InMemoryDeadLetterLog, InMemoryProgressLog, InMemoryRepository

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def at(minutes: int, event_id: str) -> Activity:
    when = NOW + timedelta(minutes=minutes)
    return Activity.record(id=event_id, user_id="u", action="a", received_at=when, timestamp=when)


async def test_a_keyset_walk_visits_every_activity_once_in_order() -> None:
    repository = InMemoryRepository()
    # Ties on the timestamp are broken by id.
    await repository.add_many([at(i // 3, f"e{i:02d}") for i in range(20)])
    seen, position = [], None
    while True:
        page = await repository.find(ActivityQuery(limit=6, after=position, count_total=False))
        seen += [a.id for a in page.items]
        position = page.next_position
        if position is None:
            break
    assert seen == [f"e{i:02d}" for i in reversed(range(20))]
    assert page.total is None


def test_a_cursor_only_fits_the_filters_it_was_made_for() -> None:
    query = ActivityQuery(user_id="u", actions=("b", "a"))
    same = ActivityQuery(user_id="u", actions=("a", "b"))
    other = ActivityQuery(user_id="v")
    token = encode_cursor(Position(NOW, "e1"), query.fingerprint)
    assert decode_cursor(token, same.fingerprint) == Position(NOW, "e1")
    with pytest.raises(InvalidQuery):
        decode_cursor(token, other.fingerprint)
    for garbage in ("", "abc", "eyJ0IjoxfQ", "!!!"):
        with pytest.raises(InvalidQuery):
            decode_cursor(garbage, query.fingerprint)


def test_page_and_cursor_do_not_mix() -> None:
    with pytest.raises(InvalidQuery):
        ActivityQuery(page=2, after=Position(NOW, "e1"))


def progress(partition: int, *, caught_up: bool, minutes: int) -> PartitionProgress:
    when = NOW + timedelta(minutes=minutes)
    return PartitionProgress("t", partition, 10, when - timedelta(minutes=5), caught_up, when)


async def test_freshness_is_the_least_complete_partition_and_unknown_until_all_report() -> None:
    log = InMemoryProgressLog()
    freshness = ReadFreshness(log, "t", partitions=2)
    await log.record([progress(0, caught_up=True, minutes=0)])
    assert await freshness.execute() is None
    await log.record([progress(1, caught_up=False, minutes=0)])
    assert await freshness.execute() == NOW - timedelta(minutes=5)
    await log.record([PartitionProgress("t", 1, 11, None, True, NOW + timedelta(minutes=1))])
    assert await freshness.execute() == NOW


async def test_status_moves_from_pending_to_persisted_and_reports_dead_letters() -> None:
    repository, dead, log = InMemoryRepository(), InMemoryDeadLetterLog(), InMemoryProgressLog()
    status = GetEventStatus(repository, dead, ReadFreshness(log, "t", partitions=1))
    event_id = Uuid7Ids().new_id()
    assert (await status.execute("default", event_id)).status is EventStatus.PENDING  # nothing reported yet

    await log.record([PartitionProgress("t", 0, 1, None, True, datetime.now(UTC) - timedelta(minutes=1))])
    assert (await status.execute("default", event_id)).status is EventStatus.PENDING  # newer than the store

    await repository.add_many([Activity.record(id=event_id, user_id="u", action="a", received_at=NOW)])
    assert (await status.execute("default", event_id)).status is EventStatus.PERSISTED

    await dead.add(DeadLetter("t:0:5", "poison", "InvalidActivity", "bad", NOW, "default", "u"))
    assert (await status.execute("default", "poison")).status is EventStatus.DEAD_LETTERED

    await log.record([PartitionProgress("t", 0, 2, None, True, datetime.now(UTC) + timedelta(minutes=1))])
    assert (
        await status.execute("default", Uuid7Ids().new_id())
    ).status is EventStatus.UNKNOWN  # older than the store, absent
    assert (await status.execute("default", "client-chosen")).status is EventStatus.UNKNOWN
