"""What the cluster scenarios watch: who leads each partition, which partition is busiest, and the
consumer group's committed offsets over time. Each watcher asks the brokers from a thread of its own,
with a client that survives brokers going away (it asks the others)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


@dataclass(frozen=True)
class PartitionState:
    leader: int
    """-1: no leader."""
    isr: tuple[int, ...]


async def describe(bootstrap: str, topic: str, within: float = 15) -> dict[int, PartitionState]:
    """Each partition's leader and in-sync replicas. The admin client asks one broker of the metadata,
    which may be the one just killed: the cluster lists it until its session times out (3 s), and five
    quick attempts all met it once in CI. So it asks again for up to ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            (description,) = await admin.describe_topics([topic])
            partitions = description["partitions"]
            return {p["partition"]: PartitionState(p["leader"], tuple(sorted(p["isr"]))) for p in partitions}
        except Exception:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.3)
        finally:
            await admin.close()


async def broker_ids(bootstrap: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
    finally:
        await admin.close()
    return sorted(b["node_id"] for b in cluster["brokers"])


async def end_offsets(bootstrap: str, topic: str, partitions: list[int]) -> dict[int, int]:
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await reader.start()
    try:
        ends = await reader.end_offsets([TopicPartition(topic, p) for p in partitions])
    finally:
        await reader.stop()
    return {tp.partition: end for tp, end in ends.items()}


def busiest(bootstrap: str, topic: str, over_seconds: float = 1.0) -> tuple[int, int]:
    """The partition that grew most over ``over_seconds`` of the running load, and its leader."""
    states = asyncio.run(describe(bootstrap, topic))
    before = asyncio.run(end_offsets(bootstrap, topic, list(states)))
    time.sleep(over_seconds)
    after = asyncio.run(end_offsets(bootstrap, topic, list(states)))
    partition = max(states, key=lambda p: (after[p] - before[p], after[p]))
    return partition, states[partition].leader


class _Watcher(threading.Thread):
    """Runs ``sample()`` every ``interval`` seconds on an event loop of its own until stopped."""

    def __init__(self, interval: float) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self._halt = threading.Event()
        self.errors = 0

    def run(self) -> None:
        asyncio.run(self._loop())

    async def _loop(self) -> None:
        await self.open()
        try:
            while not self._halt.is_set():
                try:
                    await asyncio.wait_for(self.sample(), 10)
                except Exception:  # a broker went away under the request: the next sample asks another
                    self.errors += 1
                await asyncio.sleep(self.interval)
        finally:
            await self.close()

    async def open(self) -> None: ...

    async def sample(self) -> None: ...

    async def close(self) -> None: ...

    def stop(self) -> None:
        self._halt.set()
        self.join(30)


class LeaderWatch:
    """Notes when the leader of ``partition`` is first someone other than ``away_from`` (and not -1). It
    runs in a process of its own: in this one the load's threads compete for the interpreter, and the
    moment would be seen seconds late. time.monotonic() is the same clock in both processes."""

    def __init__(self, bootstrap: str, topic: str, partition: int, away_from: int) -> None:
        self.args = [bootstrap, topic, str(partition), str(away_from)]
        self.moved: float | None = None
        self.new_leader: int | None = None
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        """Returns once the watcher has read the partition's leader a first time (its interpreter and
        client take a second or more to start on a busy machine)."""
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.cluster", *self.args], stdout=subprocess.PIPE, text=True
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        assert line.startswith("watching"), f"the leader watcher did not start: {line!r}"

    def stop(self) -> None:
        assert self._process is not None
        if self._process.poll() is None:
            self._process.terminate()
        out, _ = self._process.communicate(timeout=30)  # what it printed after "watching"
        for line in out.splitlines():
            if line.startswith("moved "):
                _, at, leader = line.split()
                self.moved, self.new_leader = float(at), int(leader)


async def _watch_leader(bootstrap: str, topic: str, partition: int, away_from: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    await admin.start()
    try:
        await admin._client.fetch_all_metadata()
        print("watching", flush=True)
        while True:
            try:
                # Metadata from whichever broker answers first (a dead one is skipped), not a random one.
                cluster = await asyncio.wait_for(admin._client.fetch_all_metadata(), 10)
                leader = cluster.leader_for_partition(TopicPartition(topic, partition))
            except Exception:  # a broker went away under the request: ask again
                leader = None
            if leader is not None and leader not in (away_from, -1):
                print(f"moved {time.monotonic()} {leader}", flush=True)
                return
            await asyncio.sleep(0.05)
    finally:
        await admin.close()


@dataclass
class OffsetSample:
    at: float
    offsets: dict[int, int]


class OffsetWatch(_Watcher):
    """The consumer group's committed offset of every partition, sampled over time."""

    def __init__(self, bootstrap: str, topic: str, group: str, partitions: list[int]) -> None:
        super().__init__(interval=0.2)
        self.bootstrap, self.topic, self.group = bootstrap, topic, group
        self.partitions = [TopicPartition(topic, p) for p in partitions]
        self.samples: list[OffsetSample] = []

    async def open(self) -> None:
        self.admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000)
        await self.admin.start()

    async def sample(self) -> None:
        committed = await self.admin.list_consumer_group_offsets(self.group, partitions=self.partitions)
        self.samples.append(
            OffsetSample(
                time.monotonic(),
                {tp.partition: meta.offset for tp, meta in committed.items() if meta.offset >= 0},
            )
        )

    async def close(self) -> None:
        await self.admin.close()

    def backwards(self) -> list[str]:
        """Every time a partition's committed offset went below one committed before it."""
        highest: dict[int, int] = {}
        found = []
        for sample in self.samples:
            for partition, offset in sample.offsets.items():
                if offset < highest.get(partition, -1):
                    found.append(f"partition {partition}: {highest[partition]} -> {offset}")
                highest[partition] = max(highest.get(partition, -1), offset)
        return found


if __name__ == "__main__":
    bootstrap, topic, partition, away_from = sys.argv[1:5]
    asyncio.run(_watch_leader(bootstrap, topic, int(partition), int(away_from)))
