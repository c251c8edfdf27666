"""docker/docker-compose.yml, read statically: no Docker engine runs here, so nothing is started.

Checked: the services and their wiring, health checks, pinned images, and that every variable handed to
the API and the consumer is one the service reads. Not checked: that the images pull and the stack
comes up (that needs `docker compose up` on a machine with Docker)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from activity_service.infrastructure.settings import COMMITTED_DEV_KEYS
from activity_service.interfaces.http.security.policy import HttpSecurity, InsecureConfiguration
from tests.deploy import commands
from tests.deploy.dockerfile import stages
from tests.deploy.settings_variables import load_settings, missing_required, unknown_variables

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
APP_SERVICES = ("api", "consumer")
LONG_RUNNING = ("kafka", "mongo", "api", "consumer", "prometheus", "jaeger")
OBSERVABILITY = ("prometheus", "jaeger")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return dict(compose["services"])


def env_files(service: dict[str, Any]) -> list[tuple[Path, bool]]:
    """(path, required) of each env_file entry, paths resolved against docker/."""
    entries = service.get("env_file", [])
    entries = [entries] if isinstance(entries, str) else entries
    result = []
    for entry in entries:
        path, required = (
            (entry, True) if isinstance(entry, str) else (entry["path"], entry.get("required", True))
        )
        result.append(((DOCKER / path).resolve(), required))
    return result


def read_env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value
    return pairs


def service_environment(service: dict[str, Any]) -> dict[str, str]:
    """What the repository itself gives a service: its committed env files, then `environment:`.

    The optional ../.env is the user's own file and is not part of the repository."""
    values: dict[str, str] = {}
    for path, required in env_files(service):
        if required:
            values.update(read_env_file(path))
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.partition("=")[::2] for item in environment)
    values.update({k: str(v) for k, v in environment.items()})
    return values


def test_names_the_services(services: dict[str, Any]) -> None:
    assert {"kafka", "kafka-init", "mongo", "api", "consumer", "prometheus", "jaeger"} <= set(services)


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_services_have_a_health_check(services: dict[str, Any], name: str) -> None:
    check = services[name].get("healthcheck", {})
    assert check.get("test") and not check.get("disable"), f"{name} has no health check"


def test_images_are_pinned(services: dict[str, Any]) -> None:
    for name, service in services.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: {image}"
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", services["kafka"]["image"])
    assert re.fullmatch(r"mongo:8\.0\.\d+", services["mongo"]["image"])


def test_kafka_runs_in_kraft_mode_without_zookeeper(services: dict[str, Any]) -> None:
    env = services["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "zookeeper" not in yaml.safe_dump(services).lower()


def test_mongo_keeps_its_data_in_a_named_volume(compose: dict[str, Any], services: dict[str, Any]) -> None:
    mounts = {m.split(":")[1]: m.split(":")[0] for m in services["mongo"]["volumes"]}
    assert mounts["/data/db"] in compose["volumes"]


def test_topic_creation_runs_once_before_the_processes(services: dict[str, Any]) -> None:
    init = services["kafka-init"]
    script = " ".join(init["command"])
    assert "--if-not-exists" in script and ".dlq" in script and "KAFKA_TOPIC_PARTITIONS" in script
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_processes_start_after_their_dependencies_are_healthy(services: dict[str, Any], name: str) -> None:
    depends = services[name]["depends_on"]
    assert depends["kafka"]["condition"] == "service_healthy"
    assert depends["mongo"]["condition"] == "service_healthy"
    assert depends["kafka-init"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_processes_run_the_image_built_from_the_dockerfile(services: dict[str, Any], name: str) -> None:
    build = services[name]["build"]
    assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == ROOT / "Dockerfile"
    assert commands.accepts(services[name]["command"])


def test_api_is_published_on_8000_of_loopback_only_and_listens_on_every_interface(
    services: dict[str, Any],
) -> None:
    api = services["api"]
    assert api["ports"] == ["127.0.0.1:8000:8000"], "it runs with the committed laptop key"
    assert api["command"][api["command"].index("--host") + 1] == "0.0.0.0"
    assert service_environment(api)["API_PORT"] == "8000"


def test_consumer_can_be_scaled(services: dict[str, Any]) -> None:
    consumer = services["consumer"]
    assert "container_name" not in consumer and "ports" not in consumer
    assert consumer["command"] == ["consumer"]


def test_health_checks_of_the_processes_run_the_script_the_image_carries(services: dict[str, Any]) -> None:
    copied = {c.args.split()[-1] for c in stages((ROOT / "Dockerfile").read_text())[-1].all("COPY")}
    for name in APP_SERVICES:
        test = services[name]["healthcheck"]["test"]
        assert test[:2] == ["CMD", "python"] and test[2] in copied and test[3] == name


@pytest.mark.parametrize("name", [*APP_SERVICES, "kafka-init"])
def test_every_variable_given_to_the_processes_is_a_setting(services: dict[str, Any], name: str) -> None:
    assert unknown_variables(service_environment(services[name])) == set()


@pytest.mark.parametrize("name", APP_SERVICES)
def test_every_setting_without_a_default_is_provided(services: dict[str, Any], name: str) -> None:
    assert missing_required(service_environment(services[name])) == set()


@pytest.mark.parametrize("name", APP_SERVICES)
def test_the_settings_given_are_valid(
    services: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = load_settings(service_environment(services[name]), monkeypatch, tmp_path)
    assert settings.kafka.bootstrap_servers == "kafka:9092"


def test_the_committed_laptop_key_runs_only_in_development(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = load_settings(service_environment(services["api"]), monkeypatch, tmp_path)
    assert settings.app_env == "development"
    assert {key.name for key in settings.auth.api_keys if key.shipped} == {"local"}
    assert HttpSecurity.from_settings(settings.auth, settings.api, development=True).keys is not None
    with pytest.raises(InsecureConfiguration, match="refusing to start"):
        HttpSecurity.from_settings(settings.auth, settings.api, development=False)


def test_the_service_knows_every_key_app_env_commits() -> None:
    keys = json.loads(read_env_file(DOCKER / "app.env")["AUTH_API_KEYS"])
    assert {key["key"] for key in keys} <= set(COMMITTED_DEV_KEYS)


@pytest.mark.parametrize("name", APP_SERVICES)
def test_configuration_comes_from_the_repository_env_file_when_there_is_one(
    services: dict[str, Any], name: str
) -> None:
    files = env_files(services[name])
    assert (ROOT / ".env", False) in files  # same names as .env.example; optional, so `up` works without it
    assert all(path.is_file() for path, required in files if required)


def test_processes_point_at_the_compose_network(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        env = service_environment(services[name])
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert env["MONGODB_URI"] == "mongodb://mongo:27017"


def test_observability_is_an_optional_profile(services: dict[str, Any]) -> None:
    for name, service in services.items():
        assert ("observability" in service.get("profiles", [])) == (name in OBSERVABILITY), name


def test_prometheus_scrapes_the_api_and_every_consumer(services: dict[str, Any]) -> None:
    mount = next(
        v for v in services["prometheus"]["volumes"] if v.endswith("/etc/prometheus/prometheus.yml:ro")
    )
    config = yaml.safe_load((DOCKER / mount.split(":")[0]).read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {
        (name, port)
        for job in jobs.values()
        if job.get("metrics_path") == "/metrics"
        for sd in job.get("dns_sd_configs", [])
        for name in sd["names"]
        for port in [sd["port"]]
    }
    assert {("api", 8000), ("consumer", 9100)} <= targets
    assert "9100" in services["consumer"]["expose"]


def test_the_environment_reader_sees_a_misspelled_variable(tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text("# comment\nKAFKA_TOPIC=x\nKAFKA_TOPPIC=y\n")
    service = {"env_file": [str(env_file)], "environment": {"MONGODB_URL": "mongodb://m"}}
    assert unknown_variables(service_environment(service)) == {"KAFKA_TOPPIC", "MONGODB_URL"}
