"""Create the topics the service uses, when they are missing (idempotent)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from activity_service.infrastructure.kafka.connection import Connection, options_of, start

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36


def _admin(connection: Connection) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**options_of(connection), client_id="activity-service-admin")


async def ensure_topics(
    connection: Connection,
    topics: Sequence[str],
    partitions: int,
    replication_factor: int,
    configs: Mapping[str, str] | None = None,
) -> None:
    """Creates the missing ones with these partitions, replicas and topic ``configs`` (min.insync.replicas,
    retention.ms...). Existing topics are left as they are; where their replication differs from what is
    asked, a warning says so (the service never changes a topic it did not just create)."""
    admin = _admin(connection)
    await start(admin, connection)
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        present = [t for t in topics if t in existing]
        await _warn_if_different(admin, present, replication_factor, configs or {})
        if not missing:
            return
        response = await admin.create_topics(
            [
                NewTopic(
                    name=t,
                    num_partitions=partitions,
                    replication_factor=replication_factor,
                    topic_configs=dict(configs or {}),
                )
                for t in missing
            ]
        )
        for topic, code, *rest in response.topic_errors:
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                message = rest[0] if rest else ""
                raise RuntimeError(f"cannot create Kafka topic {topic!r}: error code {code} {message}")
            if code == 0:
                log.info(
                    "created Kafka topic %s with %d partitions, replication factor %d%s",
                    topic,
                    partitions,
                    replication_factor,
                    "".join(f", {k}={v}" for k, v in (configs or {}).items()),
                )
    finally:
        await admin.close()


async def _warn_if_different(
    admin: AIOKafkaAdminClient, topics: Sequence[str], replication_factor: int, configs: Mapping[str, str]
) -> None:
    if not topics:
        return
    min_isr = configs.get("min.insync.replicas")
    found: dict[str, str] = {}
    if min_isr is not None:
        for resource in await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t, {"min.insync.replicas": None}) for t in topics]
        ):
            for _, _, _, name, entries in resource.resources:
                for config, value, *_ in entries:
                    if config == "min.insync.replicas":
                        found[name] = str(value)
    for description in await admin.describe_topics(list(topics)):
        replicas = {len(p["replicas"]) for p in description["partitions"]}
        topic = description["topic"]
        if replicas and replicas != {replication_factor}:
            log.warning(
                "Kafka topic %s exists with replication factor %s, not %d (KAFKA_REPLICATION_FACTOR): "
                "existing topics are left unchanged",
                topic,
                "/".join(map(str, sorted(replicas))),
                replication_factor,
            )
        if min_isr is not None and topic in found and found[topic] != min_isr:
            log.warning(
                "Kafka topic %s exists with min.insync.replicas=%s, not %s (KAFKA_MIN_INSYNC_REPLICAS): "
                "existing topics are left unchanged",
                topic,
                found[topic],
                min_isr,
            )


async def partitions_of(connection: Connection, topic: str) -> list[int]:
    """The topic's partition numbers; ValueError when it does not exist."""
    admin = _admin(connection)
    await start(admin, connection)
    try:
        (description,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if description["error_code"] != 0 or not description["partitions"]:
        raise ValueError(f"topic {topic!r} does not exist (error code {description['error_code']})")
    return sorted(p["partition"] for p in description["partitions"])
