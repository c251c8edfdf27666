"""Faults of the consumer side: kills, rebalances, poison. The API keeps taking load throughout."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from typing import Any

import pytest

from activity_service.infrastructure.kafka.topics import partitions_of
from tests.conftest import Stack
from tests.e2e.processes import Deployment, get
from tests.faults.cluster import OffsetWatch
from tests.faults.harness import finish, group_of, settle, wait_stored, window
from tests.faults.ledger import Report, assert_both_tenants, assert_exact
from tests.faults.poison import POISON_USER, classic, dead_letters, produce, unforeseen
from tests.faults.traffic import TWO_TENANTS, Traffic, api_keys
from tests.stored import StoredView

KILLS = 10
# Kills that first wait until the consumer writes: each costs ~10 s, the session timeout after which the
# broker gives up on the killed member and hands its partitions to the new one.
WHILE_STORING = {0, 3, 6, 9}


def stored_count(stored: StoredView) -> int:
    return stored.count()


def wait_until_storing(stored: StoredView, timeout: float) -> bool:
    """True once the stored count moves (the consumer is writing), False after ``timeout``."""
    before = stored_count(stored)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if stored_count(stored) != before:
            return True
    return False


@pytest.mark.scenario("1 consumer SIGKILL x10")
def test_consumer_sigkilled_ten_times_at_random_moments(
    deployment: Deployment, stack: Stack, stored: StoredView, report: Report, rng: random.Random
) -> None:
    """Some kills wait until the consumer is writing (so they land between a write and its commit), the
    others come at any moment (starting up, joining the group, waiting for the killed member to expire).
    Two tenants write the same ids meanwhile: each must end with exactly its own events."""
    env = {"CONSUMER_MAX_BATCH_RECORDS": "100"}
    deployment.extra_env = {**deployment.extra_env, **api_keys(TWO_TENANTS)}
    consumer = deployment.start_consumer(**env)
    _, base_url = deployment.start_api()
    traffic = Traffic([base_url], rate=150, keys=TWO_TENANTS).start()
    mid_write = 0
    for kill in range(KILLS):
        if kill in WHILE_STORING and wait_until_storing(stored, timeout=20):
            time.sleep(rng.uniform(0, 0.4))
        else:
            time.sleep(rng.uniform(0.2, 3.0))
        before = stored_count(stored)
        time.sleep(0.1)
        mid_write += stored_count(stored) != before
        consumer.send_signal(signal.SIGKILL)
        consumer.wait(10)
        consumer = deployment.start_consumer(**env)
    backlog = set(traffic.acked)
    cleared = wait_stored(stored, backlog, timeout=90)
    catch = finish(stack, deployment, stored, traffic, report)
    report.recovery = "n/a" if cleared is None else f"{cleared:.1f}s (last restart -> backlog stored)"
    report.details.append(f"{KILLS} kills, {mid_write} while the consumer was writing")
    report.details.append(f"{len(backlog)} acknowledged before the last restart")
    settle(traffic, catch)
    assert_exact(catch.ledger)
    assert_both_tenants(catch.ledger.tenants)
    assert mid_write > 0, "no kill landed while the consumer was writing: the scenario proved little"


@pytest.mark.scenario("5 consumer rebalances")
def test_two_consumers_one_restarted_over_and_over(
    deployment: Deployment, stack: Stack, stored: StoredView, report: Report, rng: random.Random
) -> None:
    cycles = 6
    deployment.start_consumer(CONSUMER_MAX_BATCH_RECORDS="100")
    restarted = deployment.start_consumer(CONSUMER_MAX_BATCH_RECORDS="100")
    _, base_url = deployment.start_api()
    traffic = Traffic([base_url], rate=400).start()
    exits = []
    for _ in range(cycles):
        # Each stop comes once the member has joined and been given partitions: a SIGTERM while it is
        # still starting is a clean stop that causes no rebalance (the entry point takes it before it
        # joins), and on a loaded machine starting takes longer than these pauses.
        deployment.wait_log(restarted, "partitions assigned", 60)
        time.sleep(rng.uniform(1.0, 3.0))
        exits.append(deployment.stop(restarted, signal.SIGTERM, timeout=30))
        restarted = deployment.start_consumer(CONSUMER_MAX_BATCH_RECORDS="100")
    backlog = set(traffic.acked)
    cleared = wait_stored(stored, backlog, timeout=90)
    catch = finish(stack, deployment, stored, traffic, report)
    assignments = sum(
        p.read_text(errors="replace").count("partitions assigned")
        for p in deployment.logs.glob("consumer-*.log")
    )
    report.recovery = "n/a" if cleared is None else f"{cleared:.1f}s (last restart -> backlog stored)"
    report.details.append(f"{cycles} stop/start cycles, {assignments} partition assignments logged")
    settle(traffic, catch)
    assert_exact(catch.ledger)
    assert exits == [0] * cycles, f"SIGTERM exit codes: {exits}"
    assert assignments >= cycles, "the restarts did not cause the rebalances they should"


SESSION_TIMEOUT = 10.0
"""aiokafka's default session.timeout.ms: how long the coordinator waits for a silent member."""


@pytest.mark.scenario("8 consumer SIGSTOP")
def test_a_consumer_frozen_past_its_session_timeout_wakes_fenced_and_changes_nothing(
    deployment: Deployment, stack: Stack, stored: StoredView, report: Report, rng: random.Random
) -> None:
    """A long GC pause, a stalled VM: consumer A is SIGSTOPped (while it is writing, if it can be caught
    at it) for longer than its session timeout while consumer B runs. The coordinator gives A's partitions
    to B. On SIGCONT, A finishes the batch it had in hand and tries to commit it with its old generation:
    that commit must be refused (or be harmless), so no committed offset ever moves backwards, and
    nothing is lost or stored twice. The group's committed offsets are sampled every 0.2 s throughout."""
    frozen_for = SESSION_TIMEOUT + rng.uniform(3, 6)
    env = {"CONSUMER_MAX_BATCH_RECORDS": "100"}
    frozen = deployment.start_consumer(**env)
    deployment.wait_log(frozen, "partitions assigned", 60)
    other = deployment.start_consumer(**env)
    _, base_url = deployment.start_api()
    traffic = Traffic([base_url], rate=400).start()
    deployment.wait_log(other, "partitions assigned", 60)
    partitions = asyncio.run(partitions_of(stack.kafka_bootstrap, deployment.name))
    watch = OffsetWatch(stack.kafka_bootstrap, deployment.name, group_of(deployment), partitions)
    watch.start()
    try:
        time.sleep(rng.uniform(2, 4))
        caught_writing = wait_until_storing(stored, timeout=10)
        stopped = time.monotonic()
        frozen.send_signal(signal.SIGSTOP)
        time.sleep(frozen_for)
        frozen.send_signal(signal.SIGCONT)
        woke = time.monotonic()
        time.sleep(5)  # the woken consumer rejoins, the group rebalances again, under load
        backlog = set(traffic.acked)
        cleared = wait_stored(stored, backlog, timeout=90)
        catch = finish(stack, deployment, stored, traffic, report)
    finally:
        watch.stop()
    frozen_log = deployment.log_files[frozen.pid].read_text(errors="replace")
    other_log = deployment.log_files[other.pid].read_text(errors="replace")
    refused = frozen_log.count("commit refused after a rebalance") + frozen_log.count("was not committed")
    takeover = [
        s.at - stopped for s in watch.samples if s.at > stopped and _moved(watch, stopped, s.at, partitions)
    ]
    backwards = watch.backwards()
    report.recovery = "n/a" if cleared is None else f"{cleared:.1f}s (SIGCONT -> backlog stored)"
    report.window = window(traffic, stopped)[1]
    report.details.append(
        f"frozen {frozen_for:.1f}s (session timeout {SESSION_TIMEOUT:g}s), "
        f"{'while writing' if caught_writing else 'not caught writing'}; the other took over "
        f"{'(offsets moved after ' + format(takeover[0], '.1f') + 's)' if takeover else '(no move seen)'}; "
        f"woken consumer's commits refused {refused}; {len(watch.samples)} offset samples, "
        f"{len(backwards)} moves backwards; consumers alive {frozen.poll() is None}/{other.poll() is None}"
    )
    settle(traffic, catch)
    assert_exact(catch.ledger)
    assert not backwards, f"committed offsets moved backwards: {backwards[:5]}"
    assert len(watch.samples) > 50, f"only {len(watch.samples)} samples of the committed offsets"
    assert frozen.poll() is None and other.poll() is None, "a consumer exited"
    assert other_log.count("partitions assigned") >= 2, "the other consumer was never given A's partitions"
    assert woke - stopped > SESSION_TIMEOUT


def _moved(watch: OffsetWatch, since: float, at: float, partitions: list[int]) -> bool:
    """Whether every partition's committed offset has grown between ``since`` and ``at``."""
    before = next((s.offsets for s in reversed(watch.samples) if s.at <= since), {})
    now = next((s.offsets for s in watch.samples if s.at >= at), {})
    return all(now.get(p, -1) > before.get(p, -1) for p in partitions)


def poison_scenario(
    deployment: Deployment,
    stack: Stack,
    stored: StoredView,
    report: Report,
    poison: dict[str, bytes | None],
) -> tuple[Traffic, Any, list[tuple[int, int]], list[Any], list[int], str]:
    """Steady load; after 2 s every poison is written to every partition; the load goes on for 3 s.
    A consumer that dies is restarted, as an orchestrator would. Returns the load, the catch-up, where
    the poison landed, the dead letters, the consumers' failing exit codes, and the status of the
    listing of the poison's user afterwards."""
    consumer = deployment.start_consumer()
    _, base_url = deployment.start_api()
    traffic = Traffic([base_url], rate=300).start()
    time.sleep(2)
    values = list(poison.values())
    placed = asyncio.run(produce(stack, deployment.name, [(p, v) for p in range(3) for v in values]))
    crashes: list[int] = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        code = consumer.poll()
        if code is not None:
            crashes.append(code)
            consumer = deployment.start_consumer()
        time.sleep(0.2)
    traffic.stop()
    catch = finish(stack, deployment, stored, traffic, report, catch_up_timeout=15 if crashes else 90)
    crashes += [code for p in deployment.processes if (code := p.poll()) is not None and code != 0]
    wait = 10 if catch.complete else 2
    letters = asyncio.run(dead_letters(stack, deployment.name, len(placed), wait_seconds=wait))
    listing = get(base_url, "/api/activities", params={"userId": POISON_USER}).status_code
    return traffic, catch, placed, letters, crashes, f"listing answers {listing}"


@pytest.mark.scenario("7 poison messages")
def test_poison_is_dead_lettered_and_every_partition_keeps_flowing(
    deployment: Deployment, stack: Stack, stored: StoredView, report: Report
) -> None:
    poison = classic(deployment.name)
    traffic, catch, placed, letters, crashes, listing = poison_scenario(
        deployment, stack, stored, report, poison
    )
    sources = sorted(
        (int(dict(r.headers)["dlq.source.partition"]), int(dict(r.headers)["dlq.source.offset"]))
        for r in letters
    )
    recorded = len(stored.dead_letters())
    report.recovery = f"{catch.seconds:.1f}s (load stopped -> all stored, topic committed to its end)"
    report.details.append(
        f"{len(placed)} poison messages ({len(poison)} kinds x 3 partitions), {len(letters)} dead-lettered, "
        f"{recorded} recorded, consumer crashes {len(crashes)}, {listing}"
    )
    settle(traffic, catch)
    assert_exact(catch.ledger)
    assert crashes == []
    assert sources == sorted(placed), "the dead-letter topic does not hold exactly the poison messages"
    assert recorded == len(placed)
    assert listing == "listing answers 200"


@pytest.mark.scenario("7b unforeseen poison")
@pytest.mark.parametrize("kind", list(unforeseen("x")))
def test_poison_with_fields_the_decoder_trusts_is_dead_lettered_too(
    deployment: Deployment, stack: Stack, stored: StoredView, report: Report, kind: str
) -> None:
    """A non-string trace id or client address, a time out of range once converted to UTC: the decoder
    must refuse these like any other poison, not crash the consumer (its restart meets the same message:
    a crash loop, the partition stalled) nor store them (a stored one breaks every read that meets it)."""
    report.scenario = f"7b poison: {kind}"
    poison = {kind: unforeseen(deployment.name)[kind]}
    traffic, catch, placed, letters, crashes, listing = poison_scenario(
        deployment, stack, stored, report, poison
    )
    report.recovery = f"{catch.seconds:.1f}s" if catch.complete else "never (partitions stalled)"
    report.details.append(
        f"{len(placed)} poison messages, {len(letters)} dead-lettered, consumer crashes {len(crashes)}, "
        f"{listing}"
    )
    crash_reasons = sorted(
        {
            line.strip()
            for p in deployment.logs.glob("consumer-*.log")
            for line in p.read_text(errors="replace").splitlines()
            if line.startswith(("TypeError", "OverflowError", "ValueError"))
        }
    )
    assert crashes == [], f"the consumer crashed {len(crashes)} times on this poison: {crash_reasons}"
    assert len(letters) == len(placed), f"{len(letters)} of the {len(placed)} poison messages dead-lettered"
    settle(traffic, catch)
    assert_exact(catch.ledger)
    assert listing == "listing answers 200"
