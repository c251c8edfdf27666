"""Persist progress after a batch: a partition a rebalance took away meanwhile is the new owner's."""

from __future__ import annotations

from aiokafka import TopicPartition

from activity_service.infrastructure.kafka.progress import ProgressTracker
from tests.fakes import InMemoryProgressLog

KEPT, TAKEN = TopicPartition("activities", 0), TopicPartition("activities", 1)


class Reassigned:
    """The two calls the tracker makes of an AIOKafkaConsumer, as aiokafka answers them once partition 1
    moved to another member: its highwater is refused (an AssertionError), not None."""

    def assignment(self) -> set[TopicPartition]:
        return {KEPT}

    def highwater(self, tp: TopicPartition) -> int:
        assert tp in self.assignment(), "Partition is not assigned"
        return 120


async def test_a_batch_whose_partition_moved_during_its_commit_records_only_what_is_still_assigned() -> None:
    log = InMemoryProgressLog()
    tracker = ProgressTracker(Reassigned(), log)  # type: ignore[arg-type]

    await tracker.after_batch({KEPT: 120, TAKEN: 80})

    assert sorted(log.records) == [("activities", 0)]
    assert log.records[("activities", 0)].next_offset == 120
    assert log.records[("activities", 0)].caught_up
