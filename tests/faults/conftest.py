"""Fixtures of the fault-injection suite (``make test-faults``, ``make test-faults-cluster``): an isolated
deployment per scenario on the store it is parametrized with (``BOTH_STORES``, else MongoDB), a
store-neutral view of what it stored, the stack's control script, and the per-scenario report, printed at
the end of the run.

``FAULTS_SEED`` fixes the random choices (kill moments, restart gaps) to replay a run; every report line
prints the seed it used.

Scenarios marked ``cluster`` need the three-broker stack (``make test-faults-cluster`` starts it on ports
of its own); ``make test-faults`` runs the others.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Stack
from tests.e2e.processes import Deployment, forget, prepare
from tests.faults.cluster import broker_ids
from tests.faults.control import StackControl
from tests.faults.ledger import Report
from tests.stored import StoredView

REPORTS: list[Report] = []
SEED = int(os.environ.get("FAULTS_SEED") or random.SystemRandom().randrange(1, 1_000_000))


@pytest.fixture
def seed() -> int:
    return SEED


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    return random.Random(f"{SEED}:{request.node.name}")


@dataclass(frozen=True)
class Cluster:
    brokers: list[int]
    env: dict[str, str]
    """What every process of a deployment on it is given: three replicas, two of them in sync to ack."""


@pytest.fixture(scope="session")
def cluster(stack: Stack) -> Cluster:
    """The three-broker stack the cluster scenarios need; a clear failure on anything smaller."""
    brokers = asyncio.run(broker_ids(stack.kafka_bootstrap))
    if len(brokers) < 3:
        pytest.fail(
            f"This scenario needs a three-broker Kafka cluster; {stack.kafka_bootstrap} has {len(brokers)} "
            "broker(s). Run it with `make test-faults-cluster` (it starts one on ports of its own).",
            pytrace=False,
        )
    return Cluster(brokers, {"KAFKA_REPLICATION_FACTOR": "3", "KAFKA_MIN_INSYNC_REPLICAS": "2"})


@pytest.fixture
def control() -> StackControl:
    script = os.environ.get("STACK_CONTROL")
    if not script:
        pytest.fail(
            "This scenario crashes or cuts off a process of the local stack, which needs its control script: "
            "run it through `make test-faults` (it sets STACK_CONTROL=scripts/stack.sh).",
            pytrace=False,
        )
    return StackControl(script)


@pytest.fixture
def deployment(
    request: pytest.FixtureRequest, stack: Stack, unique_name: str, tmp_path: Path
) -> Iterator[Deployment]:
    deployment = Deployment(
        stack=stack,
        name=f"faults_{unique_name}",
        logs=tmp_path,
        store=getattr(request, "param", "mongodb"),
        # No consumer serves metrics: several share this host (and other engineers' runs).
        extra_env={"CONSUMER_METRICS_PORT": "0"},
    )
    asyncio.run(prepare(deployment))
    try:
        yield deployment
    finally:
        deployment.stop_all()
        try:
            asyncio.run(forget(stack, deployment.name))
        except Exception as exc:  # the shared broker may be down because of someone else's test
            print(f"could not drop {deployment.name}: {exc}")


@pytest.fixture
def stored(deployment: Deployment) -> Iterator[StoredView]:
    """What the deployment's store holds, read straight from the database, the same way for every store."""
    view = deployment.stored()
    try:
        yield view
    finally:
        view.close()


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Iterator[Report]:
    """The scenario's report line; registered even when the scenario fails half-way."""
    name = request.node.get_closest_marker("scenario")
    entry = Report(scenario=name.args[0] if name else request.node.name, seed=SEED)
    began = time.monotonic()
    yield entry
    entry.seconds = time.monotonic() - began
    REPORTS.append(entry)
    print(entry.line())


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "scenario(name): a fault scenario; names its line in the report")
    config.addinivalue_line("markers", "cluster: needs the three-broker stack (make test-faults-cluster)")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORTS:
        return
    terminalreporter.section("fault injection: one line per scenario")
    terminalreporter.write_line(f"seed {SEED} (FAULTS_SEED={SEED} replays these random choices)")
    for entry in sorted(REPORTS, key=lambda r: r.scenario):
        terminalreporter.write_line(entry.line())
