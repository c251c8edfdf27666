import pytest

from activity_service.application.record_activity import ActivityDraft
from activity_service.application.record_batch import BatchTooLarge, InvalidBatch, RecordBatch
from activity_service.domain.errors import FieldError, PublishUnavailable
from tests.fakes import FixedClock, InMemoryPublisher, SequentialIds


@pytest.fixture
def publisher() -> InMemoryPublisher:
    return InMemoryPublisher()


@pytest.fixture
def record_batch(publisher: InMemoryPublisher) -> RecordBatch:
    return RecordBatch(publisher, FixedClock(), SequentialIds(), max_items=5)


async def test_valid_items_are_published_and_each_item_has_a_result_in_order(
    record_batch: RecordBatch, publisher: InMemoryPublisher
) -> None:
    result = await record_batch.execute(
        [
            ActivityDraft(user_id="u1", action="a", id="mine"),
            [FieldError("userId", "Field required")],
            ActivityDraft(user_id="u2", action=""),
            ActivityDraft(user_id="u3", action="c"),
        ]
    )
    assert [r.index for r in result.items] == [0, 1, 2, 3]
    assert [r.accepted for r in result.items] == [True, False, False, True]
    assert (result.accepted, result.rejected) == (2, 2)
    assert result.items[1].errors == (FieldError("userId", "Field required"),)
    assert {e.field for e in result.items[2].errors} == {"action"}
    assert publisher.published == [result.items[0].activity, result.items[3].activity]
    assert publisher.published[0].id == "mine"
    assert len({a.received_at for a in publisher.published}) == 1


async def test_a_batch_with_nothing_valid_is_refused_whole(
    record_batch: RecordBatch, publisher: InMemoryPublisher
) -> None:
    with pytest.raises(InvalidBatch) as exc:
        await record_batch.execute(
            [[FieldError("action", "Field required")], ActivityDraft(user_id="", action="x")]
        )
    assert exc.value.result.rejected == 2
    assert publisher.published == []


async def test_too_many_items_are_refused_before_anything_else(
    record_batch: RecordBatch, publisher: InMemoryPublisher
) -> None:
    with pytest.raises(BatchTooLarge):
        await record_batch.execute([ActivityDraft(user_id="u", action="a")] * 6)
    assert publisher.published == []


async def test_when_the_log_is_down_nothing_is_accepted(
    record_batch: RecordBatch, publisher: InMemoryPublisher
) -> None:
    publisher.down = True
    with pytest.raises(PublishUnavailable):
        await record_batch.execute([ActivityDraft(user_id="u", action="a")])
    assert publisher.published == []
