"""Messages written straight to the topic, past the API: what another producer or a bug could leave."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.conftest import Stack

POISON_USER = "poison-user"


def envelope(event_id: str, **data: Any) -> bytes:
    """A version-1 envelope around a well-formed activity, with ``data`` overriding its fields."""
    now = datetime.now(UTC).isoformat()
    body = {
        "id": event_id,
        "userId": POISON_USER,
        "action": "poison",
        "timestamp": now,
        "receivedAt": now,
        "metadata": {},
        "ipAddress": "127.0.0.1",
    }
    body.update(data)
    return orjson.dumps({"v": 1, "type": "activity.recorded", "data": body})


def classic(tag: str) -> dict[str, bytes | None]:
    """Poison the consumer is built to dead-letter: unreadable bytes, a tombstone, envelopes it does not
    know, and activities that break an invariant. The ids (``tag`` + kind) must never be stored."""
    future = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    return {
        "garbage": b"\x00\xffnot json at all",
        "tombstone": None,
        "unknown-version": orjson.dumps({"v": 99, "type": "activity.recorded", "data": {}}),
        "wrong-types": orjson.dumps({"v": 1, "type": "activity.recorded", "data": {"userId": 5}}),
        "empty-user": envelope(f"{tag}-empty-user", userId=""),
        "dollar-key": envelope(f"{tag}-dollar-key", metadata={"$where": "1"}),
        "far-future": envelope(f"{tag}-far-future", timestamp=future),
        "bad-time": envelope(f"{tag}-bad-time", timestamp="yesterday-ish"),
    }


def unforeseen(tag: str) -> dict[str, bytes | None]:
    """Poison with fields the decoder takes on trust: a non-string trace id, a time whose UTC value is
    out of range, a non-string client address. Each must be dead-lettered like any other poison."""
    return {
        "trace-id-not-a-string": envelope(f"{tag}-trace", traceId=5),
        "time-out-of-range": envelope(f"{tag}-overflow", timestamp="0001-01-01T00:00:00+14:00"),
        "ip-address-not-a-string": envelope(f"{tag}-ip", ipAddress=12345),
    }


async def produce(
    stack: Stack, topic: str, messages: list[tuple[int, bytes | None]]
) -> list[tuple[int, int]]:
    """Writes ``(partition, value)`` messages; returns where each landed, ``(partition, offset)``."""
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        placed = []
        for partition, value in messages:
            meta = await producer.send_and_wait(topic, value=value, key=b"poison", partition=partition)
            placed.append((meta.partition, meta.offset))
        return placed
    finally:
        await producer.stop()


async def dead_letters(stack: Stack, topic: str, expected: int, wait_seconds: float = 30) -> list[Any]:
    """The records of ``<topic>.dlq``: waits until ``expected`` arrived (or ``wait_seconds``), then one
    second more for any that should not be there."""
    reader = AIOKafkaConsumer(
        f"{topic}.dlq", bootstrap_servers=stack.kafka_bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await reader.start()
    found: list[Any] = []
    try:
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            for records in (await reader.getmany(timeout_ms=500)).values():
                found.extend(records)
            if len(found) >= expected:
                deadline = min(deadline, time.monotonic() + 1)
    finally:
        await reader.stop()
    return found
