"""Start the real `activity-service` processes for end-to-end tests, each with its own topic,
consumer group, database and port, and stop them the way an orchestrator would."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient

from tests.conftest import Stack
from tests.postgres import drop_database, with_database
from tests.stored import MongoView, PostgresView, StoredView

CLI = str(Path(sys.executable).with_name("activity-service"))
# Every deployment starts with this one key holding every scope; security tests add their own.
API_KEY = "e2e-full-access-key-0123456789"
SCOPES = ["activities:write", "activities:read", "activities:read-pii", "activities:erase"]
API_KEYS = json.dumps([{"name": "e2e", "key": API_KEY, "scopes": SCOPES}])
AUTH_HEADERS = {"Authorization": f"Bearer {API_KEY}"}
# Runs a test once per store: put it on a test (or as a module's pytestmark) that takes `deployment`.
BOTH_STORES = pytest.mark.parametrize("deployment", ["mongodb", "postgresql"], indirect=True)
# The only variables of the test's own environment that the service processes see.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "VIRTUAL_ENV", "JAVA_HOME")


def api(base_url: str, **kwargs: Any) -> httpx.Client:
    """An HTTP client for the API, carrying the full-access key."""
    kwargs.setdefault("timeout", 30)
    return httpx.Client(base_url=base_url, headers=AUTH_HEADERS, **kwargs)


def get(base_url: str, path: str, **kwargs: Any) -> httpx.Response:
    with api(base_url) as client:
        return client.get(path, **kwargs)


def post(base_url: str, path: str, **kwargs: Any) -> httpx.Response:
    with api(base_url) as client:
        return client.post(path, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Deployment:
    """One isolated deployment: a topic, a group, a database; any number of API and consumer processes."""

    stack: Stack
    name: str
    logs: Path
    extra_env: Mapping[str, str] = field(default_factory=dict)
    store: str = "mongodb"
    """STORE for every process: mongodb (a database named like the deployment) or postgresql (likewise)."""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log_files: dict[int, Path] = field(default_factory=dict)
    """Each process's log, by pid."""

    def env(self, **overrides: str) -> dict[str, str]:
        """The processes' whole environment: what the OS needs, then the deployment's settings. Nothing
        else the shell exports (AUTH_ENABLED=false, say) reaches them; they run in ``cwd``, where no
        ``.env`` file is."""
        env = {name: os.environ[name] for name in INHERITED if name in os.environ}
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=self.stack.kafka_bootstrap,
            MONGODB_URI=self.stack.mongo_uri,
            KAFKA_TOPIC=self.name,
            KAFKA_CONSUMER_GROUP=f"{self.name}-group",
            KAFKA_TOPIC_PARTITIONS="3",
            MONGODB_DATABASE=self.name,
            STORE=self.store,
            POSTGRES_DSN=with_database(self.stack.postgres_dsn, self.name.lower()),
            LOG_LEVEL="INFO",
            LOG_FORMAT="json",
            AUTH_ENABLED="true",
            AUTH_API_KEYS=API_KEYS,
            # Limits no functional test reaches; security tests set their own.
            RATE_LIMIT_EVENTS_PER_SECOND="1000000",
            RATE_LIMIT_BURST="1000000",
        )
        env.update(self.extra_env)
        env.update(overrides)
        return env

    @property
    def cwd(self) -> Path:
        return self.logs

    @property
    def store_service(self) -> str:
        """The local stack's name for the store's server (what Stack.stop/start take)."""
        return "postgres" if self.store == "postgresql" else "mongo"

    def stored(self) -> StoredView:
        """What the deployment's store holds, read straight from the database."""
        if self.store == "postgresql":
            return PostgresView(with_database(self.stack.postgres_dsn, self.name.lower()))
        return MongoView(self.stack.mongo_uri, self.name)

    def _spawn(self, args: list[str], log_name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.logs / log_name).open("ab")
        process = subprocess.Popen([CLI, *args], env=env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        self.log_files[process.pid] = self.logs / log_name
        return process

    def start_api(
        self, *, wait: bool = True, port: int | None = None, **env: str
    ) -> tuple[subprocess.Popen[bytes], str]:
        """An API process on ``port`` (default: a free one; the same one again for a restart at the same
        address); unless ``wait`` is False, once /health/ready answers 200."""
        port = port or free_port()
        process = self._spawn(["api", "--port", str(port)], f"api-{port}.log", self.env(**env))
        base_url = f"http://127.0.0.1:{port}"
        if wait:
            wait_until(lambda: _ready(base_url), 60, f"API on {base_url} to be ready", process, self.logs)
        return process, base_url

    def start_consumer(self, **env: str) -> subprocess.Popen[bytes]:
        """Each consumer gets its own metrics port (CONSUMER_METRICS_PORT), unless the test chose one."""
        env.setdefault("CONSUMER_METRICS_PORT", str(free_port()))
        return self._spawn(["consumer"], f"consumer-{len(self.processes)}.log", self.env(**env))

    def wait_log(self, process: subprocess.Popen[bytes], text: str, timeout: float) -> None:
        """Until ``process`` has logged ``text`` (a marker such as "partitions assigned")."""
        log = self.log_files[process.pid]
        wait_until(
            lambda: text in log.read_text(errors="replace"),
            timeout,
            f"{text!r} in {log.name}",
            process,
            self.logs,
        )

    def stop(self, process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        process.send_signal(sig)
        return process.wait(timeout=timeout)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()

    def log_text(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in sorted(self.logs.iterdir())
        )


def _ready(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/health/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    process: subprocess.Popen[bytes] | None = None,
    logs: Path | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process is not None and process.poll() is not None:
            break
        time.sleep(0.2)
    details = ""
    if logs is not None:
        details = "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(logs.iterdir()))
    raise AssertionError(f"timed out waiting for {what}\n{details}")


def post_all(base_url: str, items: list[dict[str, Any]], concurrency: int = 16) -> list[httpx.Response]:
    """POST each item, several at a time; the answers come back in input order."""
    with api(base_url) as client, ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(lambda item: client.post("/api/activities", json=item), items))


def total(base_url: str, **params: Any) -> int:
    return int(get(base_url, "/api/activities", params=params).json()["total"])


async def prepare(deployment: Deployment) -> None:
    """Creates what the deployment's store needs beforehand: a PostgreSQL database of its own."""
    if deployment.store == "postgresql":
        admin = await asyncpg.connect(deployment.stack.postgres_dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{deployment.name.lower()}"')
        finally:
            await admin.close()


async def forget(stack: Stack, name: str) -> None:
    """Drops the deployment's topics and databases, so the shared broker does not pile up partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        await admin.delete_topics([t for t in (name, f"{name}.dlq") if t in existing])
    finally:
        await admin.close()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_uri)
    try:
        await client.drop_database(name)
    finally:
        await client.close()
    postgres = await asyncpg.connect(stack.postgres_dsn)
    try:
        await drop_database(postgres, name.lower())
    finally:
        await postgres.close()
