"""The service over an authenticated, encrypted Kafka connection, for real: a broker of its own (started by
scripts/stack.sh with a SASL_SSL listener and a mutual-TLS SSL listener; the CA, the broker's and a client's
certificates made here with openssl; SCRAM users made with Kafka's kafka-configs), the real API, consumer and
replay processes, and what they say when the credentials are wrong."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from activity_service.infrastructure.kafka.connection import client_options
from activity_service.infrastructure.kafka.topics import ensure_topics, partitions_of
from activity_service.infrastructure.settings import KafkaSettings
from tests.conftest import Stack
from tests.e2e.processes import AUTH_HEADERS, CLI, Deployment, forget, free_port, post_all, total, wait_until
from tests.e2e.test_stream import events

ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "activity-svc", "right-password-1234"


def openssl(command: str, cwd: Path) -> None:
    subprocess.run(["openssl", *command.split()], cwd=cwd, check=True, capture_output=True)


def make_certificates(directory: Path) -> None:
    """A CA; the broker's key and certificate (for 127.0.0.1 and localhost) signed by it, with the chain in
    one PEM file as the broker reads it; a client certificate signed by it (mutual TLS)."""
    openssl("req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=ca", directory)
    (directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, extra in (("broker", "-extfile san.cnf"), ("client", "")):
        openssl(f"req -newkey rsa:2048 -nodes -keyout {name}.key -out {name}.csr -subj /CN={name}", directory)
        openssl(
            f"x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out {name}.crt "
            + extra,
            directory,
        )
    chain = [(directory / f).read_text() for f in ("broker.key", "broker.crt", "ca.pem")]
    (directory / "broker.pem").write_text("".join(chain))


@dataclass(frozen=True)
class SecureBroker:
    plaintext: str
    sasl_ssl: str
    ssl: str
    tls: Path
    env: dict[str, str]

    def stack(self, *args: str, **env: str) -> None:
        subprocess.run(
            ["bash", str(ROOT / "scripts/stack.sh"), *args],
            env={**self.env, **env},
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=240,
        )

    def sasl_env(self, mechanism: str = "SCRAM-SHA-512", password: str = PASSWORD) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.sasl_ssl,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": mechanism,
            "KAFKA_SASL_USERNAME": USER,
            "KAFKA_SASL_PASSWORD": password,
            "KAFKA_SSL_CA_FILE": str(self.tls / "ca.pem"),
        }

    def mutual_tls_env(self) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.ssl,
            "KAFKA_SECURITY_PROTOCOL": "SSL",
            "KAFKA_SSL_CA_FILE": str(self.tls / "ca.pem"),
            "KAFKA_SSL_CERT_FILE": str(self.tls / "client.crt"),
            "KAFKA_SSL_KEY_FILE": str(self.tls / "client.key"),
        }


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """A single broker of its own (the shared stack's is PLAINTEXT and used by everyone)."""
    base = tmp_path_factory.mktemp("secure-kafka")
    tls = base / "tls"
    tls.mkdir()
    make_certificates(tls)
    ports = {name: free_port() for name in ("kafka", "controller", "sasl", "ssl", "mongo", "postgres")}
    env = {
        **os.environ,
        "STACK_DIR": str(base / "stack"),
        "KAFKA_PORT": str(ports["kafka"]),
        "KAFKA_CONTROLLER_PORT": str(ports["controller"]),
        "MONGO_PORT": str(ports["mongo"]),  # not started; `down` only looks at these
        "POSTGRES_PORT": str(ports["postgres"]),
        "STACK_KAFKA_BROKERS": "1",
        "STACK_KAFKA_SASL_SSL_PORT": str(ports["sasl"]),
        "STACK_KAFKA_SSL_PORT": str(ports["ssl"]),
        "STACK_KAFKA_TLS_KEYSTORE": str(tls / "broker.pem"),
        "STACK_KAFKA_TLS_CA": str(tls / "ca.pem"),
        "STACK_KAFKA_SASL_USERS": f"{USER}:{PASSWORD}",
    }
    secure = SecureBroker(
        plaintext=f"127.0.0.1:{ports['kafka']}",
        sasl_ssl=f"127.0.0.1:{ports['sasl']}",
        ssl=f"127.0.0.1:{ports['ssl']}",
        tls=tls,
        env=env,
    )
    try:
        secure.stack("up", "kafka")
        yield secure
    finally:
        secure.stack("down")


@pytest.fixture
def secure_deployment(stack: Stack, unique_name: str, tmp_path: Path) -> Iterator[Deployment]:
    deployment = Deployment(stack=stack, name=f"e2e_{unique_name}", logs=tmp_path)
    try:
        yield deployment
    finally:
        deployment.stop_all()
        asyncio.run(forget(stack, deployment.name))


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_every_sasl_mechanism_authenticates_over_tls(broker: SecureBroker, mechanism: str) -> None:
    settings = KafkaSettings.explicit(
        bootstrap_servers=broker.sasl_ssl,
        security_protocol="SASL_SSL",
        sasl_mechanism=mechanism,
        sasl_username=USER,
        sasl_password=PASSWORD,
        ssl_ca_file=str(broker.tls / "ca.pem"),
    )
    topic = f"mechanism-{mechanism.lower()}"
    await ensure_topics(client_options(settings), [topic], 2, 1, {"min.insync.replicas": "1"})
    assert await partitions_of(client_options(settings), topic) == [0, 1]


@pytest.mark.parametrize("protocol", ["SASL_SSL", "SSL"])
def test_the_slice_over_an_authenticated_tls_connection(
    broker: SecureBroker, secure_deployment: Deployment, protocol: str
) -> None:
    """POST -> Kafka -> consumer -> database -> GET, the live tail, and replay, every client over SASL_SSL
    (SCRAM-SHA-512) or over mutual TLS (a client certificate)."""
    env = broker.sasl_env() if protocol == "SASL_SSL" else broker.mutual_tls_env()
    deployment = secure_deployment
    deployment.extra_env = env
    deployment.start_consumer()
    _, base_url = deployment.start_api()
    items = [{"userId": f"u{i % 4}", "action": "secure", "id": f"sec-{protocol}-{i}"} for i in range(40)]
    with httpx.Client(base_url=base_url, headers=AUTH_HEADERS, timeout=30) as http:
        with http.stream("GET", "/api/activities/stream") as live:
            received = events(live.iter_lines())
            assert next(received)["event"] == "ready"
            responses = post_all(base_url, items)
            first = json.loads(next(received)["data"])
    assert [r.status_code for r in responses] == [202] * len(items)
    assert first["id"] in {item["id"] for item in items}
    wait_until(lambda: total(base_url) == len(items), 60, "every activity to be stored", logs=deployment.logs)
    replay = subprocess.run(
        [CLI, "replay", "--from", "earliest"],
        env=deployment.env(),
        cwd=deployment.cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert replay.returncode == 0, replay.stderr
    assert "40 events read: 0 stored, 40 already stored" in replay.stdout, replay.stdout


def run_to_exit(deployment: Deployment, args: list[str], timeout: float = 60) -> tuple[int, str]:
    log = deployment.logs / f"{args[0]}-exit.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [CLI, *args], env=deployment.env(), cwd=deployment.cwd, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError(
                f"{args[0]} kept running with a wrong password:\n{log.read_text()}"
            ) from None
    return code, log.read_text(errors="replace")


def test_a_wrong_password_stops_both_processes_at_start_saying_what_to_check(
    broker: SecureBroker, secure_deployment: Deployment
) -> None:
    secure_deployment.extra_env = broker.sasl_env(password="wrong-password-1234")
    for args in (["api", "--port", str(free_port())], ["consumer"]):
        code, log = run_to_exit(secure_deployment, args)
        assert code != 0, log
        assert f"the broker refused the credentials of user '{USER}' (SCRAM-SHA-512)" in log, log[-3000:]
        assert "check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM" in log
        assert "wrong-password-1234" not in log


def test_a_password_rotated_on_the_broker_only_fails_readiness_with_a_clear_reason(
    broker: SecureBroker, secure_deployment: Deployment
) -> None:
    """The API runs; the user's password changes on the cluster (not in the API's settings) and the broker
    restarts, so every connection is made again: readiness answers 503, and the log says why. Last in the
    module: it leaves the broker with the new password."""
    secure_deployment.extra_env = broker.sasl_env()
    _, base_url = secure_deployment.start_api()
    assert httpx.get(f"{base_url}/health/ready", timeout=10).status_code == 200
    broker.stack("down", "kafka")
    broker.stack("up", "kafka", STACK_KAFKA_SASL_USERS=f"{USER}:rotated-password-5678")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answer = httpx.get(f"{base_url}/health/ready", timeout=10)
        if answer.status_code == 503:
            break
        time.sleep(0.5)
    assert answer.status_code == 503 and answer.json()["checks"]["kafka"] == "unavailable", answer.text
    wait_until(
        lambda: "refused the credentials of user" in secure_deployment.log_text(),
        30,
        "the readiness log line naming the refused credentials",
        logs=secure_deployment.logs,
    )
