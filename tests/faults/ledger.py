"""What the database holds against what the client was told: the one verdict every fault scenario ends with.

- **lost**: acknowledged (202) ids not stored. Must be 0.
- **duplicated**: one client event (``metadata`` client and seq) stored more than once, under two ids.
  Must be 0.
- **unexpected**: stored ids that were never acknowledged. Must be 0: the client retried every batch
  that got a 503 (with the same ids) until it was acknowledged, so an event that reached the topic
  after its 503 is acknowledged too.
- **crossed**: events stored under a tenant (or a key, ``source``) other than the one that wrote them
  (the writer's tenant and key name are in ``metadata``). Must be 0.

Every count is also kept per tenant, ids being counted by ledger key (tenant and id), so two tenants that
send the same ids must each end with their own copy of each.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from activity_service.infrastructure.kafka.codec import event_id_of
from activity_service.infrastructure.kafka.topics import partitions_of
from tests.conftest import Stack
from tests.stored import StoredView


@dataclass
class Ledger:
    acknowledged: int
    stored: int
    lost: list[str]
    duplicated: list[str]
    unexpected: list[str]
    crossed: list[str] = field(default_factory=list)
    tenants: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Per tenant: (acknowledged, stored)."""

    @property
    def exact(self) -> bool:
        return not self.lost and not self.duplicated and not self.unexpected and not self.crossed

    def per_tenant(self) -> str:
        lost, duplicated, unexpected = (
            Counter(_tenant_of(k) for k in keys) for keys in (self.lost, self.duplicated, self.unexpected)
        )
        return "; ".join(
            f"{t}: acknowledged {a}, stored {s}, lost {lost[t]}, duplicated {duplicated[t]}, "
            f"unexpected {unexpected[t]}"
            for t, (a, s) in sorted(self.tenants.items())
        )


def reconcile(stored: StoredView, acknowledged: Collection[str]) -> Ledger:
    """Read once the consumer has caught up (nothing is written between the two reads)."""
    entries = stored.entries()
    keys = {e.key for e in entries}
    wanted = set(acknowledged)
    events = Counter((e.tenant, e.metadata.get("client"), e.metadata.get("seq")) for e in entries)
    tenants = {e.tenant for e in entries} | {_tenant_of(k) for k in wanted}
    return Ledger(
        acknowledged=len(wanted),
        stored=len(entries),
        lost=sorted(wanted - keys),
        duplicated=sorted(
            ("" if t == "default" else f"{t}/") + f"{client}#{seq}"
            for (t, client, seq), n in events.items()
            if n > 1
        ),
        unexpected=sorted(keys - wanted),
        crossed=sorted(
            f"{e.key} (under {e.tenant}/{e.source}, "
            f"written by {e.metadata.get('tenant')}/{e.metadata.get('key')})"
            for e in entries
            if e.metadata.get("tenant", e.tenant) != e.tenant or e.metadata.get("key", e.source) != e.source
        ),
        tenants={
            t: (sum(_tenant_of(k) == t for k in wanted), sum(e.tenant == t for e in entries))
            for t in sorted(tenants)
        },
    )


def _tenant_of(key: str) -> str:
    return key.split("/", 1)[0] if "/" in key else "default"


async def consumer_lag(stack: Stack, topic: str, group: str) -> int | None:
    """Records of ``topic`` not yet committed by ``group``; None when the group has committed nothing."""
    partitions = [TopicPartition(topic, p) for p in await partitions_of(stack.kafka_bootstrap, topic)]
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
    finally:
        await admin.close()
    reader = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, request_timeout_ms=5000)
    await reader.start()
    try:
        ends = await reader.end_offsets(partitions)
    finally:
        await reader.stop()
    if not committed:
        return None
    return sum(end - max(committed[tp].offset, 0) if tp in committed else end for tp, end in ends.items())


async def topic_census(stack: Stack, topic: str) -> tuple[int, int]:
    """Records on ``topic`` and distinct event ids among them: more records than ids means the same event
    was appended more than once (a publish that timed out and landed anyway, then its retry), which the
    consumer's idempotent writes absorb."""
    partitions = [TopicPartition(topic, p) for p in await partitions_of(stack.kafka_bootstrap, topic)]
    reader = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False)
    await reader.start()
    records, ids = 0, set()
    try:
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        ends = await reader.end_offsets(partitions)
        while [tp for tp, end in ends.items() if await reader.position(tp) < end]:
            for batch in (await reader.getmany(timeout_ms=1000, max_records=5000)).values():
                for record in batch:
                    records += 1
                    ids.add(event_id_of(record.value))
    finally:
        await reader.stop()
    return records, len(ids - {None})


@dataclass
class CatchUp:
    seconds: float
    ledger: Ledger
    lag: int | None
    complete: bool


def wait_caught_up(
    stack: Stack, stored: StoredView, topic: str, group: str, acknowledged: Collection[str], timeout: float
) -> CatchUp:
    """Waits until every acknowledged id is stored and the group has committed the whole topic (so
    nothing more can arrive), or ``timeout``. Returns how long it took and the final ledger."""
    began = time.monotonic()
    deadline = began + timeout
    lag: int | None = None
    while True:
        if _count(stored) >= len(acknowledged):
            try:
                lag = asyncio.run(consumer_lag(stack, topic, group))
            except Exception:  # the broker is restarting (another engineer's test): ask again
                lag = None
            if lag == 0:
                ledger = reconcile(stored, acknowledged)
                if not ledger.lost:
                    return CatchUp(time.monotonic() - began, ledger, lag, True)
        if time.monotonic() > deadline:
            return CatchUp(time.monotonic() - began, reconcile(stored, acknowledged), lag, False)
        time.sleep(0.25)


def _count(stored: StoredView) -> int:
    try:
        return stored.count()
    except Exception:  # the database is being restarted: ask again
        return -1


@dataclass
class Report:
    """One line per scenario, printed at the end of the run (and with the test's output)."""

    scenario: str
    seed: int = 0
    ledger: Ledger | None = None
    recovery: str = "n/a"
    window: str = "n/a"
    """The 503 window: how long after the fault ingest answered anything but 202, and what."""
    details: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        seed = f"seed {self.seed}"
        if self.ledger is None:
            said = "; ".join(self.details) or "stopped early"
            return f"{self.scenario:<22} {said}; {seed} [{self.seconds:.0f}s]"
        counts = (
            f"acknowledged {self.ledger.acknowledged}, stored {self.ledger.stored}, "
            f"lost {len(self.ledger.lost)}, duplicated {len(self.ledger.duplicated)}, "
            f"unexpected {len(self.ledger.unexpected)}, crossed tenants {len(self.ledger.crossed)}"
        )
        if len(self.ledger.tenants) > 1:
            counts += f" ({self.ledger.per_tenant()})"
        extra = "; ".join(self.details)
        return (
            f"{self.scenario:<22} {counts}; recovery {self.recovery}; 503 window {self.window}"
            f"{'; ' + extra if extra else ''}; {seed} [{self.seconds:.0f}s]"
        )


def assert_exact(ledger: Ledger) -> None:
    assert not ledger.lost, f"{len(ledger.lost)} acknowledged events were lost, e.g. {ledger.lost[:5]}"
    assert not ledger.duplicated, (
        f"{len(ledger.duplicated)} events stored twice, e.g. {ledger.duplicated[:5]}"
    )
    assert not ledger.unexpected, (
        f"{len(ledger.unexpected)} events stored that were never acknowledged, e.g. {ledger.unexpected[:5]}"
    )
    assert not ledger.crossed, (
        f"{len(ledger.crossed)} events stored under another tenant or key, e.g. {ledger.crossed[:5]}"
    )


def assert_both_tenants(tenants: dict[str, tuple[int, int]]) -> None:
    """Two tenants wrote (the same ids): each has its events acknowledged and stored, and no third one."""
    assert sorted(tenants) == ["acme", "globex"], f"tenants in the store: {sorted(tenants)}"
    assert all(acknowledged > 0 for acknowledged, _ in tenants.values()), tenants
