from datetime import UTC, datetime, timedelta

import pytest

from activity_service.application.check_readiness import CheckReadiness
from activity_service.application.get_activity import GetActivity
from activity_service.application.list_activities import ListActivities
from activity_service.application.read_freshness import ReadFreshness
from activity_service.application.record_activity import ActivityDraft, RecordActivity
from activity_service.domain.activity import Activity
from activity_service.domain.errors import ActivityNotFound, InvalidActivity, PublishUnavailable
from activity_service.domain.query import ActivityQuery, InvalidQuery
from tests.fakes import FixedClock, InMemoryProgressLog, InMemoryPublisher, InMemoryRepository, SequentialIds


@pytest.fixture
def publisher() -> InMemoryPublisher:
    return InMemoryPublisher()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def record(publisher: InMemoryPublisher, clock: FixedClock) -> RecordActivity:
    return RecordActivity(publisher, clock, SequentialIds())


async def test_recording_publishes_with_server_fields(
    record: RecordActivity, publisher: InMemoryPublisher
) -> None:
    activity = await record.execute(
        ActivityDraft(user_id="u1", action="login", metadata={"k": "v"}, ip_address="10.0.0.1")
    )
    assert publisher.published == [activity]
    assert activity.id == "evt-000001"
    assert activity.received_at == FixedClock().now()
    assert activity.ip_address == "10.0.0.1"


async def test_a_client_id_is_kept(record: RecordActivity) -> None:
    activity = await record.execute(ActivityDraft(user_id="u1", action="login", id="client-7"))
    assert activity.id == "client-7"


async def test_an_invalid_activity_is_not_published(
    record: RecordActivity, publisher: InMemoryPublisher
) -> None:
    with pytest.raises(InvalidActivity):
        await record.execute(ActivityDraft(user_id="", action="login"))
    assert publisher.published == []


async def test_nothing_is_accepted_when_the_log_is_down(
    record: RecordActivity, publisher: InMemoryPublisher
) -> None:
    publisher.down = True
    with pytest.raises(PublishUnavailable) as exc:
        await record.execute(ActivityDraft(user_id="u1", action="login"))
    assert exc.value.retry_after == 3
    assert publisher.published == []


def activity(n: int, *, user: str = "u1", action: str = "view", minutes: int = 0) -> Activity:
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    return Activity.record(id=f"e{n:03d}", user_id=user, action=action, received_at=at, timestamp=at)


async def test_listing_filters_and_pages_newest_first() -> None:
    repository = InMemoryRepository()
    await repository.add_many([activity(i, user="u1" if i % 2 else "u2", minutes=i) for i in range(10)])
    freshness = ReadFreshness(InMemoryProgressLog(), "t", partitions=1)
    listing = await ListActivities(repository, freshness).execute(
        ActivityQuery(user_id="u1", page=2, limit=2)
    )
    page = listing.page
    assert [a.id for a in page.items] == ["e005", "e003"]
    assert (page.total, page.total_pages, page.has_more) == (5, 3, True)
    assert listing.fresh_until is None


def test_queries_refuse_bad_pages_and_crossed_dates() -> None:
    with pytest.raises(InvalidQuery) as exc:
        ActivityQuery(
            page=0, limit=101, start=datetime(2026, 2, 1, tzinfo=UTC), end=datetime(2026, 1, 1, tzinfo=UTC)
        )
    assert {e.field for e in exc.value.errors} == {"page", "limit", "startDate"}


async def test_getting_an_unknown_id_is_not_found() -> None:
    with pytest.raises(ActivityNotFound):
        await GetActivity(InMemoryRepository()).execute("default", "nope")


async def test_readiness_names_the_failing_dependency(publisher: InMemoryPublisher) -> None:
    repository = InMemoryRepository()
    check = CheckReadiness({"kafka": publisher.ping, "mongodb": repository.ping}, timeout_seconds=1)
    assert (await check.execute()).ready
    publisher.down = True
    result = await check.execute()
    assert not result.ready
    assert result.checks["mongodb"] == "ok"
    assert "broker down" in result.checks["kafka"]
