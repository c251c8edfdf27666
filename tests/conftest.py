"""Where the tests find a real Kafka broker and the real databases (a MongoDB-wire one and PostgreSQL).

Order of preference:
1. ``KAFKA_BOOTSTRAP_SERVERS``, ``MONGODB_URI`` and ``POSTGRES_DSN`` from the environment (``make test``
   sets them from the local stack that ``make stack-up`` starts);
2. otherwise, where a Docker engine answers, Kafka, MongoDB and PostgreSQL containers (testcontainers);
3. otherwise the run stops with a message saying to run ``make stack-up``. Never a silent skip.

Every run gets its own suffix, so topic and database names never collide with another run's.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

KAFKA_IMAGE = "apache/kafka:4.1.0"
MONGO_IMAGE = "mongo:8.0.4"
POSTGRES_IMAGE = "postgres:15.10"


@dataclass(frozen=True)
class Stack:
    kafka_bootstrap: str
    mongo_uri: str
    postgres_dsn: str
    """A PostgreSQL role that may create databases: each test that needs one makes its own."""
    # How fault tests stop and restart a service: a callable taking ("stop" | "start", service name).
    control: Callable[[str, str], None] | None = None

    def stop(self, service: str) -> None:
        self._control("stop", service)

    def start(self, service: str) -> None:
        self._control("start", service)

    def _control(self, verb: str, service: str) -> None:
        if self.control is None:
            pytest.fail(
                "This test stops and restarts a service, which needs the local stack's control script: "
                "run it through `make test` (it sets STACK_CONTROL) or set STACK_CONTROL=scripts/stack.sh.",
                pytrace=False,
            )
        self.control(verb, service)


def _script_control(script: str) -> Callable[[str, str], None]:
    def control(verb: str, service: str) -> None:
        command = {"stop": "down", "start": "up"}[verb]
        subprocess.run(["bash", script, command, service], check=True, stdout=subprocess.DEVNULL, timeout=180)

    return control


def _container_control(containers: dict[str, Any]) -> Callable[[str, str], None]:
    """Under testcontainers a paused container stands for a stopped server: same ports when it resumes."""

    def control(verb: str, service: str) -> None:
        wrapped = containers[service].get_wrapped_container()
        wrapped.pause() if verb == "stop" else wrapped.unpause()

    return control


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    mongo = os.environ.get("MONGODB_URI")
    postgres = os.environ.get("POSTGRES_DSN")
    if kafka and mongo and postgres:
        script = os.environ.get("STACK_CONTROL")
        yield Stack(
            kafka_bootstrap=kafka,
            mongo_uri=mongo,
            postgres_dsn=postgres,
            control=_script_control(script) if script else None,
        )
        return
    if not _docker_answers():
        pytest.fail(
            "No Kafka/MongoDB/PostgreSQL to test against: KAFKA_BOOTSTRAP_SERVERS, MONGODB_URI and "
            "POSTGRES_DSN are not all set and no Docker engine answers. Run `make stack-up` and export the "
            "settings it prints, or use `make test`.",
            pytrace=False,
        )
    from testcontainers.kafka import KafkaContainer
    from testcontainers.mongodb import MongoDbContainer
    from testcontainers.postgres import PostgresContainer

    with (
        KafkaContainer(KAFKA_IMAGE).with_kraft() as k,
        MongoDbContainer(MONGO_IMAGE) as m,
        PostgresContainer(POSTGRES_IMAGE, driver=None) as p,
    ):
        yield Stack(
            kafka_bootstrap=k.get_bootstrap_server(),
            mongo_uri=m.get_connection_url(),
            postgres_dsn=p.get_connection_url(),
            control=_container_control({"kafka": k, "mongo": m, "postgres": p}),
        )


@pytest.fixture(scope="session")
def run_id() -> str:
    return uuid.uuid4().hex[:10]


_counter = itertools.count()


@pytest.fixture
def unique_name(run_id: str) -> str:
    """A name no other test or run uses: for topics, consumer groups and databases."""
    return f"t{run_id}_{next(_counter)}"
