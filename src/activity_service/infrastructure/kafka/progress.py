"""Persist progress per partition: how far the consumer has stored, for freshness and its metrics."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from activity_service.domain.delivery import PartitionProgress
from activity_service.domain.ports import ProgressLog
from activity_service.infrastructure.observability.consumer import lag, watermark

log = logging.getLogger(__name__)


class ProgressTracker:
    """Records, after each batch and while idle, how far each assigned partition is persisted."""

    def __init__(self, consumer: AIOKafkaConsumer, log_: ProgressLog) -> None:
        self._consumer = consumer
        self._log = log_
        self._last_received: dict[TopicPartition, datetime] = {}

    def saw(self, last_received: dict[TopicPartition, datetime]) -> None:
        """Note, per partition, the latest receipt time among events just stored."""
        for tp, received_at in last_received.items():
            if tp not in self._last_received or received_at > self._last_received[tp]:
                self._last_received[tp] = received_at

    async def after_batch(self, next_offsets: dict[TopicPartition, int]) -> None:
        """Call once the batch is stored and committed (``next_offsets``: what was committed)."""
        now = datetime.now(UTC)
        progress = []
        assigned = self._consumer.assignment()
        for tp, next_offset in next_offsets.items():
            if tp not in assigned:
                # Taken away by a rebalance while the batch was written or committed (the commit was then
                # refused): the new owner records its progress. Asking for its highwater would raise.
                continue
            highwater = self._consumer.highwater(tp)
            caught_up = highwater is not None and next_offset >= highwater
            if highwater is not None:
                lag(tp.partition, highwater - next_offset)
            progress.append(
                PartitionProgress(
                    tp.topic, tp.partition, next_offset, self._last_received.get(tp), caught_up, now
                )
            )
        await self._write(progress)

    async def when_idle(self) -> None:
        """With nothing to read, every caught-up partition is complete up to now: say so, so that
        readers can tell "no new events" from "not stored yet"."""
        now = datetime.now(UTC)
        progress = []
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            if highwater is None:
                continue
            position = await self._consumer.position(tp)
            lag(tp.partition, max(0, highwater - position))
            if position >= highwater:
                progress.append(
                    PartitionProgress(
                        tp.topic, tp.partition, position, self._last_received.get(tp), True, now
                    )
                )
        await self._write(progress)

    async def _write(self, progress: list[PartitionProgress]) -> None:
        for p in progress:
            watermark(p.partition, p.complete_until)
        try:
            await self._log.record(progress)
        except Exception as exc:  # progress only informs readers; the next batch records it again
            log.warning("could not record persist progress: %s: %s", type(exc).__name__, exc)
