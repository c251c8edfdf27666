"""The dead-letter topic: where a message goes when it can never be stored, so its partition moves on."""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from activity_service.domain.delivery import Received
from activity_service.domain.times import to_iso


class KafkaDeadLetterTopic:
    """DeadLetterTopic on Kafka: copies a message, key and value untouched, to the dead-letter topic with
    headers saying why.

    Headers: ``dlq.error``, ``dlq.error.type``, ``dlq.source.topic``, ``dlq.source.partition``,
    ``dlq.source.offset``, ``dlq.at``. Returns once the broker acknowledged the copy, so the caller may
    then commit past the original.
    """

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    async def send(self, message: Received, error_type: str, reason: str) -> None:
        headers = [
            ("dlq.error", reason[:1000].encode()),
            ("dlq.error.type", error_type.encode()),
            ("dlq.source.topic", message.topic.encode()),
            ("dlq.source.partition", str(message.partition).encode()),
            ("dlq.source.offset", str(message.offset).encode()),
            ("dlq.at", to_iso(datetime.now(UTC)).encode()),
        ]
        await self._producer.send_and_wait(self._topic, value=message.value, key=message.key, headers=headers)
