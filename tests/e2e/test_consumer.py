"""The consumer never loses or duplicates an event: kills, outages, poison, rebalances, replay."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from activity_service.domain.activity import Activity
from activity_service.infrastructure.kafka.codec import encode
from activity_service.infrastructure.kafka.topics import ensure_topics
from tests.conftest import Stack
from tests.e2e.load import Stream
from tests.e2e.processes import BOTH_STORES, CLI, Deployment, get, post, total, wait_until
from tests.faults.ledger import consumer_lag
from tests.stored import StoredView

pytestmark = BOTH_STORES


def assert_exactly_once(
    deployment: Deployment, stack: Stack, stored: StoredView, accepted: list[str]
) -> None:
    """Once the group has committed the whole topic (nothing more can arrive: no sleep needed to let a
    stranger show up), the store holds exactly the acknowledged events (an id is stored at most once)."""

    def caught_up() -> bool:
        if stored.count() < len(accepted):
            return False
        return asyncio.run(consumer_lag(stack, deployment.name, f"{deployment.name}-group")) == 0

    wait_until(caught_up, 120, "the group to commit the whole topic", logs=deployment.logs)
    ids = set(stored.ids())
    missing = set(accepted) - ids
    assert not missing, f"{len(missing)} acknowledged events were lost"
    assert ids == set(accepted), f"{len(ids - set(accepted))} events that were never acknowledged were stored"


def wait_stored(deployment: Deployment, stored: StoredView, count: int, timeout: float = 90) -> None:
    wait_until(
        lambda: stored.count() >= count,
        timeout,
        f"{count} events to be stored",
        logs=deployment.logs,
    )


async def produce(
    stack: Stack, topic: str, messages: list[tuple[bytes | None, bytes]], partition: int
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(topic, value=value, key=key, partition=partition)
    finally:
        await producer.stop()


async def read_dead_letters(stack: Stack, topic: str, expected: int) -> list[Any]:
    consumer = AIOKafkaConsumer(
        f"{topic}.dlq", bootstrap_servers=stack.kafka_bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    found: list[Any] = []
    try:
        deadline = time.monotonic() + 60
        while len(found) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found.extend(records)
    finally:
        await consumer.stop()
    return found


def valid_message(event_id: str, user: str = "poison-neighbour") -> bytes:
    now = datetime.now(UTC)
    return encode(Activity.record(id=event_id, user_id=user, action="after-poison", received_at=now))


async def test_poison_messages_are_dead_lettered_with_headers_and_the_partition_keeps_flowing(
    deployment: Deployment, stack: Stack, stored: StoredView
) -> None:
    topic = deployment.name
    await ensure_topics(stack.kafka_bootstrap, [topic, f"{topic}.dlq"], partitions=3, replication_factor=1)
    invalid = valid_message("poison-invalid").replace(b'"userId":"poison-neighbour"', b'"userId":""')
    await produce(
        stack,
        topic,
        [
            (b"k", b"\x00\xffnot json at all"),
            (b"k", b'{"v": 1, "type": "activity.recorded", "data": {"userId": 5}}'),
            (b"k", invalid),
            *[(b"k", valid_message(f"after-{i}")) for i in range(5)],
        ],
        partition=1,
    )
    deployment.start_consumer()
    wait_stored(deployment, stored, 5)
    assert sorted(stored.ids()) == [f"after-{i}" for i in range(5)]

    letters = await read_dead_letters(stack, topic, 3)
    assert len(letters) == 3
    for offset, letter in enumerate(letters):
        headers = {k: v.decode() for k, v in letter.headers}
        assert headers["dlq.source.topic"] == topic
        assert headers["dlq.source.partition"] == "1"
        assert headers["dlq.source.offset"] == str(offset)
        assert headers["dlq.error"] and headers["dlq.error.type"] and headers["dlq.at"].endswith("Z")
    assert letters[0].value == b"\x00\xffnot json at all"
    # Each letter goes to the topic first, then to the store's log: the last one read from the topic
    # may not be recorded yet.
    wait_until(lambda: len(stored.dead_letters()) >= 3, 30, "3 dead letters recorded", logs=deployment.logs)
    recorded = stored.dead_letters()
    assert set(recorded) == {f"{topic}:1:0", f"{topic}:1:1", f"{topic}:1:2"}
    assert recorded[f"{topic}:1:2"] == "poison-invalid"


def test_consumer_killed_repeatedly_mid_stream_stores_every_event_once(
    deployment: Deployment, stack: Stack, stored: StoredView
) -> None:
    consumer = deployment.start_consumer(CONSUMER_MAX_BATCH_RECORDS="50")
    _, base_url = deployment.start_api()
    stream = Stream(base_url, total=1500, batch_size=25).start()
    rng = random.Random(7)
    for _ in range(4):
        time.sleep(rng.uniform(0.3, 1.2))
        consumer.send_signal(signal.SIGKILL)
        consumer.wait(10)
        consumer = deployment.start_consumer(CONSUMER_MAX_BATCH_RECORDS="50")
    stream.join()
    assert stream.failures == []
    assert_exactly_once(deployment, stack, stored, stream.accepted)


def test_database_outage_the_consumer_retries_commits_nothing_past_it_and_catches_up(
    deployment: Deployment, stack: Stack, stored: StoredView
) -> None:
    deployment.start_consumer(CONSUMER_RETRY_MAX_SECONDS="1")
    _, base_url = deployment.start_api()
    first = Stream(base_url, total=100).start()
    first.join()
    wait_stored(deployment, stored, 100)
    stack.stop(deployment.store_service)
    try:
        during = Stream(base_url, total=200).start()
        during.join()
        assert len(during.accepted) == 200  # Kafka still takes them
        wait_until(
            lambda: "retrying" in deployment.log_text(), 30, "the consumer to retry", logs=deployment.logs
        )
    finally:
        stack.start(deployment.store_service)
    assert_exactly_once(deployment, stack, stored, first.accepted + during.accepted)


def test_two_consumers_with_one_restarted_over_and_over_store_every_event_once(
    deployment: Deployment, stack: Stack, stored: StoredView
) -> None:
    deployment.start_consumer()
    restarted = deployment.start_consumer()
    _, base_url = deployment.start_api()
    stream = Stream(base_url, total=1500, batch_size=25).start()
    for _ in range(4):
        deployment.wait_log(restarted, "partitions assigned", 60)  # a member of the group, then stopped
        assert deployment.stop(restarted) == 0
        restarted = deployment.start_consumer()
    stream.join()
    assert_exactly_once(deployment, stack, stored, stream.accepted)


def test_sigterm_during_a_stream_exits_0_in_bounded_time_and_loses_nothing(
    deployment: Deployment, stack: Stack, stored: StoredView
) -> None:
    consumer = deployment.start_consumer()
    _, base_url = deployment.start_api()
    stream = Stream(base_url, total=800).start()
    time.sleep(1.0)
    began = time.monotonic()
    assert deployment.stop(consumer, signal.SIGTERM, timeout=30) == 0
    assert time.monotonic() - began < 15
    stream.join()
    deployment.start_consumer()
    assert_exactly_once(deployment, stack, stored, stream.accepted)


def test_sigterm_at_any_moment_of_starting_is_a_clean_stop(deployment: Deployment) -> None:
    """An orchestrator may scale down a pod it just made: from the moment the process catches SIGTERM
    (its first lines; before that only the interpreter's own start-up runs) through importing, connecting
    and serving, SIGTERM stops the API and the consumer with exit 0."""
    for delay in (0.0, 0.1, 0.4, 1.0, 2.5):
        for start in (deployment.start_consumer, lambda: deployment.start_api(wait=False)[0]):
            process = start()
            caught_by = time.monotonic() + 10
            while not catches_sigterm(process.pid):  # polled tightly: a delay of 0 is the very first moment
                assert time.monotonic() < caught_by and process.poll() is None, deployment.log_text()[-3000:]
                time.sleep(0.002)
            time.sleep(delay)
            code = deployment.stop(process, signal.SIGTERM, timeout=30)
            assert code == 0, (delay, deployment.log_text()[-3000:])


def catches_sigterm(pid: int) -> bool:
    """Whether the process has a handler for SIGTERM (Linux: the SigCgt mask in /proc/<pid>/status)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught, 16) & (1 << (signal.SIGTERM - 1)))


def run_cli(deployment: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args],
        env=deployment.env(),
        cwd=deployment.cwd,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_replaying_the_topic_restores_lost_documents_and_twice_changes_nothing(
    deployment: Deployment, stack: Stack, stored: StoredView
) -> None:
    deployment.start_consumer()
    _, base_url = deployment.start_api()
    stream = Stream(base_url, total=200).start()
    stream.join()
    wait_stored(deployment, stored, 200)
    lost = stream.accepted[:15]
    stored.delete(lost)

    first = run_cli(deployment, "replay", "--from", "earliest")
    assert first.returncode == 0, first.stderr
    assert "done in" in first.stdout and "200 events read: 15 stored, 185 already stored" in first.stdout
    second = run_cli(deployment, "replay", "--from", "earliest")
    assert "200 events read: 0 stored, 200 already stored" in second.stdout
    assert_exactly_once(deployment, stack, stored, stream.accepted)

    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    nothing = run_cli(deployment, "replay", "--from", future)
    assert nothing.returncode == 0 and "0 events read" in nothing.stdout
    bad = run_cli(deployment, "replay", "--from", "last tuesday")
    assert bad.returncode == 2 and "ISO-8601" in bad.stderr


async def test_dlq_replay_stores_fixed_events_and_reports_the_rest(
    deployment: Deployment, stack: Stack, stored: StoredView
) -> None:
    topic = deployment.name
    await ensure_topics(stack.kafka_bootstrap, [topic, f"{topic}.dlq"], partitions=3, replication_factor=1)
    # Dead letters left by an older consumer that could not read a message this version reads fine,
    # and one that is still garbage.
    await produce(
        stack, f"{topic}.dlq", [(b"u", valid_message("fixed-1")), (b"u", b"still garbage")], partition=0
    )
    stored.add_dead_letter(f"{topic}:0:9", "fixed-1", "Old")

    result = run_cli(deployment, "dlq", "replay")
    assert result.returncode == 0, result.stderr
    assert (
        "2 events read: 1 stored, 0 already stored, 0 refused by the database, 1 unreadable" in result.stdout
    )
    assert "unreadable" in result.stderr
    assert stored.ids() == ["fixed-1"]
    assert "fixed-1" not in stored.dead_letters().values()


def test_retention_removes_events_older_than_the_setting(deployment: Deployment, stored: StoredView) -> None:
    deployment.start_consumer(RETENTION_DAYS="1", RETENTION_PURGE_INTERVAL_SECONDS="1")
    _, base_url = deployment.start_api()
    old = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    assert (
        post(
            base_url,
            "/api/activities",
            json={"userId": "r", "action": "old", "timestamp": old, "id": "old-1"},
        ).status_code
        == 202
    )
    assert (
        post(base_url, "/api/activities", json={"userId": "r", "action": "new", "id": "new-1"}).status_code
        == 202
    )
    wait_until(
        lambda: get(base_url, "/api/activities/new-1").status_code == 200, 60, "the new event to be stored"
    )
    # FerretDB has no TTL index, so the consumer purges every second; MongoDB's TTL monitor runs each minute.
    wait_until(
        lambda: not stored.has("old-1") and total(base_url) == 1,
        150,
        "the old event to be gone",
        logs=deployment.logs,
    )
    assert stored.expires_by_itself() or "retention: purged" in deployment.log_text()
