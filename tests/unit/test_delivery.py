from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from activity_service.application.erase_users import ErasedUsers
from activity_service.application.purge_expired import PurgeExpiredActivities
from activity_service.application.replay_activities import ReplayActivities
from activity_service.domain.activity import Activity
from activity_service.domain.delivery import DeadLetter, PartitionProgress, ReadBatch
from tests.fakes import FixedClock, InMemoryDeadLetterLog, InMemoryErasureLog, InMemoryRepository

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def activity(event_id: str, days_ago: int = 0) -> Activity:
    at = NOW - timedelta(days=days_ago)
    return Activity.record(id=event_id, user_id="u", action="a", received_at=at, timestamp=at)


async def batches(*items: ReadBatch) -> AsyncIterator[ReadBatch]:
    for item in items:
        yield item


async def test_replay_stores_what_is_missing_and_reports_everything() -> None:
    repository = InMemoryRepository()
    await repository.add_many([activity("a")])
    repository.refuse.add("c")
    dead = InMemoryDeadLetterLog()
    await dead.add(DeadLetter("t:0:1", "b", "InvalidActivity", "old bug", NOW, "default", "u"))
    seen = []
    report = await ReplayActivities(repository, dead, ErasedUsers(InMemoryErasureLog())).execute(
        batches(
            ReadBatch((activity("a"), activity("b")), ("t:0:9: not JSON",)),
            ReadBatch((activity("c"),)),
        ),
        forget_dead_letters=True,
        on_progress=lambda r: seen.append(r.read),
    )
    assert (report.read, report.inserted, report.duplicates) == (4, 1, 1)
    assert set(report.rejected) == {("default", "c")} and report.unreadable == ["t:0:9: not JSON"]
    assert report.summary() == (
        "4 events read: 1 stored, 1 already stored, 1 refused by the database, 1 unreadable, "
        "0 past retention, 0 erased"
    )
    assert seen == [3, 4]
    assert repository.ids() == ["a", "b"]
    assert await dead.error_types("default", "b") == set()


async def test_a_live_topic_replay_keeps_dead_letter_records() -> None:
    dead = InMemoryDeadLetterLog()
    await dead.add(DeadLetter("t:0:1", "b", "InvalidActivity", "x", NOW, "default", "u"))
    await ReplayActivities(InMemoryRepository(), dead, ErasedUsers(InMemoryErasureLog())).execute(
        batches(ReadBatch((activity("b"),)))
    )
    assert await dead.error_types("default", "b") == {"InvalidActivity"}


async def test_purge_deletes_only_events_older_than_the_retention() -> None:
    repository = InMemoryRepository()
    await repository.add_many([activity("old", days_ago=8), activity("edge", days_ago=6), activity("new")])
    deleted = await PurgeExpiredActivities(repository, FixedClock(NOW), days=7).execute()
    assert deleted == 1
    assert repository.ids() == ["edge", "new"]


def test_a_caught_up_partition_is_complete_until_it_was_recorded() -> None:
    behind = PartitionProgress("t", 0, 10, NOW - timedelta(minutes=5), caught_up=False, recorded_at=NOW)
    current = PartitionProgress("t", 1, 10, NOW - timedelta(minutes=5), caught_up=True, recorded_at=NOW)
    assert behind.complete_until == NOW - timedelta(minutes=5)
    assert current.complete_until == NOW


async def test_a_replay_does_not_store_again_what_retention_removed() -> None:
    repository = InMemoryRepository()
    report = await ReplayActivities(
        repository, InMemoryDeadLetterLog(), ErasedUsers(InMemoryErasureLog())
    ).execute(
        batches(ReadBatch((activity("old", days_ago=9), activity("recent", days_ago=1)))),
        expired_before=NOW - timedelta(days=7),
    )
    assert (report.inserted, report.expired) == (1, 1)
    assert repository.ids() == ["recent"]
