"""Faults of a three-broker cluster under load (``make test-faults-cluster``): a crashed leader, two crashed
brokers, a broker cut off the network. The service's topics have three replicas and min.insync.replicas=2,
so with acks=all a 202 means two brokers have the event: one broker may die without losing it, two may
not acknowledge anything. Every node is restarted or healed, whatever happens."""

from __future__ import annotations

import asyncio
import random
import re
import time

import pytest

from tests.conftest import Stack
from tests.e2e.processes import Deployment
from tests.faults.cluster import LeaderWatch, busiest, describe
from tests.faults.conftest import Cluster
from tests.faults.control import StackControl
from tests.faults.harness import PUBLISH_DEADLINE, crash, finish, outcomes, refusals, settle, window
from tests.faults.ledger import Report, assert_both_tenants, assert_exact
from tests.faults.traffic import E2E_KEY, TWO_TENANTS, ClientKey, Traffic, api_keys
from tests.stored import StoredView

pytestmark = pytest.mark.cluster

LEADER_DOWN_SECONDS = 10
CUT_SECONDS = 20
WINDOW_TARGET = 5.0
"""Seconds of 503s a crashed leader may cost: the controller moves its leaderships once its session times
out (broker.session.timeout.ms, 3 s on the local cluster, 9 s by default), then the producer follows."""


def start(
    deployment: Deployment, cluster: Cluster, rate: float = 300, keys: tuple[ClientKey, ...] = (E2E_KEY,)
) -> tuple[str, Traffic]:
    deployment.extra_env = {**deployment.extra_env, **cluster.env, **api_keys(keys)}
    deployment.start_consumer()
    # The loop-lag guard sheds load at once when the event loop runs 0.25 s late, which a machine shared
    # with three brokers and other test runs does now and then: those 503s say nothing of the cluster
    # (scenario 6 tests the guard), so here it only sheds past 2 s of lag.
    _, base_url = deployment.start_api(
        INGEST_PUBLISH_TIMEOUT_SECONDS=str(PUBLISH_DEADLINE), INGEST_MAX_LOOP_LAG_SECONDS="2"
    )
    # Enough workers that requests keep being sent while others wait out their publish deadline: the
    # window of refusals is then measured to a fraction of a second.
    return base_url, Traffic([base_url], rate=rate, workers=8, keys=keys).start()


def replication(stack: Stack, topic: str) -> str:
    states = asyncio.run(describe(stack.kafka_bootstrap, topic))
    return ", ".join(f"p{p} leader {s.leader} isr {list(s.isr)}" for p, s in sorted(states.items()))


def assert_replicated(stack: Stack, topic: str) -> None:
    states = asyncio.run(describe(stack.kafka_bootstrap, topic))
    assert all(len(s.isr) == 3 for s in states.values()), f"not three replicas in sync: {states}"


@pytest.mark.scenario("9 leader SIGKILL")
def test_the_leader_of_the_busiest_partition_crashes_and_returns_after_ten_seconds(
    deployment: Deployment,
    stack: Stack,
    cluster: Cluster,
    control: StackControl,
    stored: StoredView,
    report: Report,
    rng: random.Random,
) -> None:
    """Nothing acknowledged may be lost or stored twice; ingest answers 503 only until the controller has
    moved the dead broker's leaderships (WINDOW_TARGET), and never once the partition has a new leader.
    Two tenants write the same ids: each must end with exactly its own events."""
    _, traffic = start(deployment, cluster, keys=TWO_TENANTS)
    time.sleep(rng.uniform(3, 5))
    assert_replicated(stack, deployment.name)
    partition, leader = busiest(stack.kafka_bootstrap, deployment.name)
    watch = LeaderWatch(stack.kafka_bootstrap, deployment.name, partition, away_from=leader)
    watch.start()
    try:
        with crash(control, "kafka", leader) as moments:
            time.sleep(max(0.0, moments["down"] + LEADER_DOWN_SECONDS - time.monotonic()))
        time.sleep(3)
        catch = finish(stack, deployment, stored, traffic, report)
    finally:
        watch.stop()

    seconds, report.window = window(traffic, moments["stopping"])
    moved = watch.moved
    after_move = [] if moved is None else refusals(traffic, moved)
    report.recovery = (
        "never"
        if moved is None
        else f"{moved - moments['stopping']:.1f}s (kill -> new leader {watch.new_leader})"
    )
    report.details.append(
        f"partition {partition} (busiest) led by node {leader}, killed, restarted after "
        f"{moments['starting'] - moments['down']:.0f}s (took {moments['up'] - moments['starting']:.1f}s); "
        f"refused after the leadership moved: {outcomes(after_move)}; "
        f"now {replication(stack, deployment.name)}"
    )
    settle(traffic, catch)
    assert_exact(catch.ledger)
    assert_both_tenants(catch.ledger.tenants)
    assert moved is not None, "the partition never got a new leader"
    assert seconds <= WINDOW_TARGET, f"ingest refused for {seconds:.1f}s after the leader died"
    assert not after_move, f"refused after the leadership moved: {outcomes(after_move)}"


@pytest.mark.scenario("10 two brokers SIGKILL")
def test_two_brokers_crash_one_after_the_other_and_nothing_is_acknowledged_until_replicas_return(
    deployment: Deployment,
    stack: Stack,
    cluster: Cluster,
    control: StackControl,
    stored: StoredView,
    report: Report,
    rng: random.Random,
) -> None:
    """The first crash is survived (two replicas stay in sync). After the second, a partition can no longer
    have two replicas in sync (and the controllers lost their majority): ingest must answer 503, never
    202, until a broker returns; then 202 again, and nothing acknowledged is missing."""
    base_url, traffic = start(deployment, cluster)
    time.sleep(rng.uniform(3, 5))
    assert_replicated(stack, deployment.name)
    _, first = busiest(stack.kafka_bootstrap, deployment.name)
    second = rng.choice([b for b in cluster.brokers if b != first])
    try:
        stopping = time.monotonic()
        control.kill("kafka", first)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # the survivors lead every partition, the dead one is out of ISRs
            states = asyncio.run(describe(stack.kafka_bootstrap, deployment.name))
            if all(s.leader not in (first, -1) and first not in s.isr for s in states.values()):
                break
            time.sleep(0.2)
        one_down = time.monotonic()
        time.sleep(2)
        two_down = control.kill("kafka", second)
        time.sleep(8)
        returning = time.monotonic()
        returned = control.up("kafka", first)
    finally:
        control.up("kafka", first)  # a no-op when it runs: whatever failed, the cluster comes back whole
        control.up("kafka", second)
    time.sleep(3)
    catch = finish(stack, deployment, stored, traffic, report)

    between = traffic.between(one_down, two_down)
    both_down = traffic.between(two_down, returning)
    first_202 = traffic.first_202_sent_after(two_down)
    report.window = window(traffic, stopping)[1]
    report.recovery = (
        "never"
        if first_202 is None
        else f"{first_202.answered - returning:.1f}s (restart of node {first} began -> 202)"
    )
    report.details.append(
        f"killed node {first}, then node {second} {two_down - one_down:.0f}s later; one down: "
        f"{outcomes(between)}; two down ({returning - two_down:.0f}s): {outcomes(both_down)}; node {first} "
        f"back in {returned - returning:.1f}s; now {replication(stack, deployment.name)}"
    )
    settle(traffic, catch)
    assert_exact(catch.ledger)
    assert both_down, "no request was answered while two brokers were down"
    assert 202 not in {a.status for a in both_down}, f"202 with two brokers down: {outcomes(both_down)}"
    assert first_202 is not None and first_202.answered - returned <= 15
    assert first_202.sent >= two_down


@pytest.mark.scenario("11 network cut")
@pytest.mark.parametrize("how", ["isolated", "from peers"])
def test_a_leader_cut_off_the_network_for_twenty_seconds_acknowledges_nothing_stale(
    deployment: Deployment,
    stack: Stack,
    cluster: Cluster,
    control: StackControl,
    stored: StoredView,
    report: Report,
    rng: random.Random,
    how: str,
) -> None:
    """The leader of the busiest partition loses the network for CUT_SECONDS: every packet (``isolated``),
    or only those to and from the other brokers, so that clients still reach it (``from peers``: the
    stale leader a split brain would make). The controller moves its leaderships meanwhile; whatever it
    still believes, it must acknowledge nothing that is then lost: after the heal it truncates what it
    appended alone, and the ledger must be exact."""
    report.scenario = f"11 network cut ({how})"
    _, traffic = start(deployment, cluster)
    time.sleep(rng.uniform(3, 5))
    assert_replicated(stack, deployment.name)
    partition, node = busiest(stack.kafka_bootstrap, deployment.name)
    led = sorted(
        p
        for p, s in asyncio.run(describe(stack.kafka_bootstrap, deployment.name)).items()
        if s.leader == node
    )
    log = control.node_log(node)
    log_before = log.stat().st_size if log.exists() else 0
    watch = LeaderWatch(stack.kafka_bootstrap, deployment.name, partition, away_from=node)
    watch.start()
    try:
        cutting = time.monotonic()
        try:
            cut = control.cut(node, peers_only=how == "from peers")
            time.sleep(CUT_SECONDS)
        finally:
            healed = control.heal(node)
        time.sleep(5)
        catch = finish(stack, deployment, stored, traffic, report)
    finally:
        watch.stop()

    seconds, report.window = window(traffic, cutting)
    during = traffic.between(cut, healed)
    truncations = truncated(log.read_text(errors="replace")[log_before:], deployment.name)
    moved = watch.moved
    report.recovery = (
        "leadership never moved"
        if moved is None
        else f"{moved - cutting:.1f}s (cut -> new leader {watch.new_leader})"
    )
    report.details.append(
        f"node {node} (leading partitions {led}) cut {healed - cut:.0f}s; answers during the cut "
        f"{outcomes(during)}; on rejoining it truncated {truncations or 'nothing'}; now "
        f"{replication(stack, deployment.name)}"
    )
    settle(traffic, catch)
    assert_exact(catch.ledger)
    assert moved is not None, "the controller never moved the cut broker's leaderships"


def truncated(log: str, topic: str) -> list[str]:
    """The cut node's truncations of the topic's partitions once it rejoined: what it had appended as a
    stale leader (or follower) that the others never acknowledged."""
    found = []
    for line in log.splitlines():
        match = re.search(rf"partition={re.escape(topic)}-(\d+).*Truncating to (?:offset )?(\d+)", line)
        if match and "has no effect" not in line:
            found.append(f"p{match[1]} to offset {match[2]}")
    return found
