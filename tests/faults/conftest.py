"""Fixtures of the fault-injection suite (``make test-faults``): an isolated deployment per scenario, its
database, and the per-scenario report, printed at the end of the run.

``FAULTS_SEED`` fixes the random choices (kill moments, restart gaps) to replay a run; the report prints
the seed it used.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from tests.conftest import Stack
from tests.e2e.processes import Deployment, forget
from tests.faults.ledger import Report

REPORTS: list[Report] = []
SEED = int(os.environ.get("FAULTS_SEED") or random.SystemRandom().randrange(1, 1_000_000))


@pytest.fixture
def seed() -> int:
    return SEED


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    return random.Random(f"{SEED}:{request.node.name}")


@pytest.fixture
def deployment(stack: Stack, unique_name: str, tmp_path: Path) -> Iterator[Deployment]:
    deployment = Deployment(
        stack=stack,
        name=f"faults_{unique_name}",
        logs=tmp_path,
        # No consumer serves metrics: several share this host (and other engineers' runs).
        extra_env={"CONSUMER_METRICS_PORT": "0"},
    )
    try:
        yield deployment
    finally:
        deployment.stop_all()
        try:
            asyncio.run(forget(stack, deployment.name))
        except Exception as exc:  # the shared broker may be down because of someone else's test
            print(f"could not drop {deployment.name}: {exc}")


@pytest.fixture
def database(stack: Stack, deployment: Deployment) -> Iterator[Any]:
    client: MongoClient[dict[str, Any]] = MongoClient(stack.mongo_uri, tz_aware=True)
    try:
        yield client[deployment.name]
    finally:
        client.close()


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Iterator[Report]:
    """The scenario's report line; registered even when the scenario fails half-way."""
    name = request.node.get_closest_marker("scenario")
    entry = Report(scenario=name.args[0] if name else request.node.name)
    began = time.monotonic()
    yield entry
    entry.seconds = time.monotonic() - began
    REPORTS.append(entry)
    print(entry.line())


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "scenario(name): a fault scenario; names its line in the report")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORTS:
        return
    terminalreporter.section("fault injection: one line per scenario")
    terminalreporter.write_line(f"seed {SEED} (FAULTS_SEED={SEED} replays these random choices)")
    for entry in sorted(REPORTS, key=lambda r: r.scenario):
        terminalreporter.write_line(entry.line())
