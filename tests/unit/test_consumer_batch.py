"""The consumer's decoded batch: what it stores, dead-letters and commits, and what survives a rebalance."""

from datetime import UTC, datetime, timedelta

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from activity_service.domain.activity import Activity
from activity_service.infrastructure.kafka.codec import encode
from activity_service.infrastructure.kafka.consumer import _Fetched

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
P0, P1 = TopicPartition("t", 0), TopicPartition("t", 1)


def record(tp: TopicPartition, offset: int, value: bytes) -> ConsumerRecord:  # type: ignore[type-arg]
    return ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, None, value, None, 0, len(value), [])


def event(event_id: str, minutes: int) -> bytes:
    at = NOW + timedelta(minutes=minutes)
    return encode(Activity.record(id=event_id, user_id="u", action="a", received_at=at))


def test_a_batch_stores_the_decodable_dead_letters_the_rest_and_commits_past_both() -> None:
    fetched = _Fetched.decode(
        {
            P0: [record(P0, 7, event("a", 2)), record(P0, 8, b"not json"), record(P0, 9, event("b", 1))],
            P1: [record(P1, 3, event("c", 5))],
            TopicPartition("t", 2): [],
        }
    )
    readable = [m for m in fetched.messages if m.activity is not None]
    assert [m.activity.id for m in readable if m.activity] == ["a", "b", "c"]
    assert [(m.partition, m.offset) for m in readable] == [(0, 7), (0, 9), (1, 3)]
    assert [(m.offset, m.error_type, m.value) for m in fetched.messages if m.activity is None] == [
        (8, "UndecodableMessage", b"not json")
    ]
    assert len(fetched.records) == 4
    assert fetched.next_offsets == {P0: 10, P1: 4}
    assert fetched.last_received == {P0: NOW + timedelta(minutes=2), P1: NOW + timedelta(minutes=5)}


def test_after_a_rebalance_only_partitions_still_assigned_are_kept() -> None:
    fetched = _Fetched.decode({P0: [record(P0, 1, event("a", 0))], P1: [record(P1, 1, event("b", 0))]})
    assert fetched.only({P0, P1}) is fetched
    kept = fetched.only({P1})
    assert [m.activity.id for m in kept.messages if m.activity] == ["b"]
    assert kept.next_offsets == {P1: 2}
    assert not fetched.only(set()).records
