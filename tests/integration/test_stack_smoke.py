"""Smoke tests proving the stack the other tests run against is real: a Kafka broker with consumer groups and
idempotent producers, and a MongoDB-wire database that enforces unique indexes like MongoDB does.

They run against whatever the ``stack`` fixture provides (``make stack-up`` locally, containers elsewhere).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import ASCENDING, AsyncMongoClient
from pymongo.errors import BulkWriteError

if TYPE_CHECKING:
    from tests.conftest import Stack

PARTITIONS = 3
MESSAGES = 30
DUPLICATE_KEY = 11000


async def _create_topic(admin: AIOKafkaAdminClient, topic: str) -> None:
    await admin.create_topics([NewTopic(name=topic, num_partitions=PARTITIONS, replication_factor=1)])
    # Topic creation is asynchronous on the broker side: wait until the metadata lists every partition.
    for _ in range(50):
        described = await admin.describe_topics([topic])
        if (
            described
            and described[0].get("error_code") == 0
            and len(described[0]["partitions"]) == PARTITIONS
        ):
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"topic {topic} did not get {PARTITIONS} partitions in time")


async def test_kafka_round_trip_with_consumer_group_commits(stack: Stack, unique_name: str) -> None:
    topic, group = f"{unique_name}.smoke", f"{unique_name}.group"
    sent = {f"key-{i:02d}".encode(): f"value-{i:02d}".encode() for i in range(MESSAGES)}

    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap, client_id="smoke-admin")
    await admin.start()
    try:
        await _create_topic(admin, topic)
        try:
            producer = AIOKafkaProducer(
                bootstrap_servers=stack.kafka_bootstrap, acks="all", enable_idempotence=True, linger_ms=5
            )
            await producer.start()
            try:
                futures = [await producer.send(topic, key=key, value=value) for key, value in sent.items()]
                metadata = await asyncio.gather(*futures)
            finally:
                await producer.stop()
            assert {m.partition for m in metadata} <= set(range(PARTITIONS))
            assert len({m.partition for m in metadata}) > 1, "30 distinct keys should spread over partitions"

            partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            received: dict[bytes, bytes] = {}
            consumer = AIOKafkaConsumer(
                topic,
                bootstrap_servers=stack.kafka_bootstrap,
                group_id=group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
            await consumer.start()
            try:
                async with asyncio.timeout(30):
                    while len(received) < MESSAGES:
                        batches = await consumer.getmany(timeout_ms=500)
                        for records in batches.values():
                            for record in records:
                                assert record.key not in received, f"duplicate delivery of {record.key!r}"
                                received[record.key] = record.value
                await consumer.commit()
                end_offsets = await consumer.end_offsets(partitions)
            finally:
                await consumer.stop()
            assert received == sent
            assert sum(end_offsets.values()) == MESSAGES

            # A new member of the same group starts at the committed offsets: the end of each partition.
            follower = AIOKafkaConsumer(
                bootstrap_servers=stack.kafka_bootstrap, group_id=group, enable_auto_commit=False
            )
            await follower.start()
            try:
                committed = {tp: await follower.committed(tp) for tp in partitions}
            finally:
                await follower.stop()
            assert committed == end_offsets
        finally:
            await admin.delete_topics([topic])
    finally:
        await admin.close()


async def test_mongo_unique_index_and_unordered_bulk_insert(stack: Stack, unique_name: str) -> None:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        stack.mongo_uri, serverSelectionTimeoutMS=5000
    )
    try:
        assert (await client.admin.command("ping"))["ok"] == 1
        db = client[unique_name]
        try:
            events = db["events"]
            await events.create_index([("event_id", ASCENDING)], unique=True, name="event_id_unique")
            docs = [{"_id": i, "event_id": f"evt-{i}"} for i in range(5)]
            docs.insert(3, {"_id": 1, "event_id": "evt-duplicate-id"})  # same _id as docs[1]

            with pytest.raises(BulkWriteError) as caught:
                await events.insert_many(docs, ordered=False)

            write_errors = caught.value.details["writeErrors"]
            assert [e["code"] for e in write_errors] == [DUPLICATE_KEY]
            assert write_errors[0]["index"] == 3
            assert caught.value.details["nInserted"] == 5
            assert await events.count_documents({}) == 5
            assert await events.find_one({"_id": 1}) == {"_id": 1, "event_id": "evt-1"}

            # The unique secondary index is enforced too, with the same error code.
            with pytest.raises(BulkWriteError) as caught_index:
                await events.insert_many(
                    [{"_id": 100, "event_id": "evt-0"}, {"_id": 101, "event_id": "evt-x"}], ordered=False
                )
            assert [e["code"] for e in caught_index.value.details["writeErrors"]] == [DUPLICATE_KEY]
            assert await events.count_documents({}) == 6
        finally:
            await client.drop_database(unique_name)
    finally:
        await client.close()
