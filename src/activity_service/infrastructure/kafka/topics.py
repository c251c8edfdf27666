"""Create the topics the service uses, when they are missing (idempotent)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36


async def ensure_topics(
    bootstrap_servers: str, topics: Sequence[str], partitions: int, replication_factor: int
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="activity-service-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if not missing:
            return
        response = await admin.create_topics(
            [
                NewTopic(name=t, num_partitions=partitions, replication_factor=replication_factor)
                for t in missing
            ]
        )
        for topic, code, *rest in response.topic_errors:
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                message = rest[0] if rest else ""
                raise RuntimeError(f"cannot create Kafka topic {topic!r}: error code {code} {message}")
            if code == 0:
                log.info("created Kafka topic %s with %d partitions", topic, partitions)
    finally:
        await admin.close()


async def partitions_of(bootstrap_servers: str, topic: str) -> list[int]:
    """The topic's partition numbers; ValueError when it does not exist."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="activity-service-admin")
    await admin.start()
    try:
        (description,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if description["error_code"] != 0 or not description["partitions"]:
        raise ValueError(f"topic {topic!r} does not exist (error code {description['error_code']})")
    return sorted(p["partition"] for p in description["partitions"])
