"""k8s/, validated offline: every object against the Kubernetes OpenAPI schemas shipped by the
kubernetes-validate package (unknown fields refused), then the wiring between the objects and the image.

Not checked: that a cluster accepts and runs them (admission, scheduling, the image pulling)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from activity_service.interfaces.http.security.policy import HttpSecurity, InsecureConfiguration
from tests.deploy import commands
from tests.deploy.dockerfile import stages
from tests.deploy.kustomize import (
    Manifest,
    containers,
    kustomization,
    latest_kubernetes_version,
    load_documents,
    missing_resources,
    render,
    schema_errors,
)
from tests.deploy.settings_variables import default_of, load_settings, missing_required, unknown_variables

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
# The oldest minor version still commonly run by managed clusters, and the newest the package knows.
KUBERNETES_VERSIONS = ["1.30.0", latest_kubernetes_version()]
# uvicorn's timeout_graceful_shutdown in interfaces/cli.py: how long the API drains after SIGTERM.
API_DRAIN_SECONDS = 10


@pytest.fixture(scope="module")
def objects() -> list[Manifest]:
    return render(K8S)


def one(objects: list[Manifest], kind: str, name: str) -> Manifest:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


@pytest.fixture(scope="module")
def api(objects: list[Manifest]) -> Manifest:
    return one(objects, "Deployment", "activity-api")


@pytest.fixture(scope="module")
def consumer(objects: list[Manifest]) -> Manifest:
    return one(objects, "Deployment", "activity-consumer")


@pytest.fixture(scope="module")
def config(objects: list[Manifest]) -> dict[str, str]:
    return dict(one(objects, "ConfigMap", "activity-service-config")["data"])


@pytest.fixture(scope="module")
def secret() -> dict[str, str]:
    """The example Secret's keys: read from its file, since it is not a resource of the kustomization."""
    (example,) = load_documents(K8S / "secret.example.yaml")
    assert example["kind"] == "Secret" and example["metadata"]["name"] == "activity-service-secrets"
    return dict(example["stringData"])


def pod_spec(deployment: Manifest) -> dict[str, Any]:
    return dict(deployment["spec"]["template"]["spec"])


def container(deployment: Manifest) -> dict[str, Any]:
    (only,) = containers(deployment)
    return only


def setting(name: str, config: dict[str, str]) -> Any:
    return config.get(name, default_of(name))


# --- the kustomization and the schemas ---------------------------------------------------------------


def test_every_resource_of_the_kustomization_exists() -> None:
    assert missing_resources(K8S) == []
    assert kustomization(K8S)["kind"] == "Kustomization"


def test_a_missing_resource_is_reported(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: [present.yaml, absent.yaml, base]\n")
    (tmp_path / "present.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n")
    assert missing_resources(tmp_path) == ["absent.yaml", "base"]


def test_every_yaml_file_in_k8s_but_the_example_secret_is_a_resource_of_the_kustomization() -> None:
    listed = set(kustomization(K8S)["resources"]) | {"kustomization.yaml", "secret.example.yaml"}
    assert {p.name for p in K8S.glob("*.yaml")} == listed


def test_the_example_secret_is_not_applied(objects: list[Manifest]) -> None:
    assert "secret.example.yaml" not in kustomization(K8S)["resources"]
    assert [o for o in objects if o["kind"] == "Secret"] == [], "create the Secret from a secret store"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_validates_against_the_kubernetes_schema(objects: list[Manifest], version: str) -> None:
    assert objects
    assert [e for e in (schema_errors(o, version) for o in objects) if e] == []


def test_the_schema_check_refuses_a_misspelled_field(api: Manifest) -> None:
    broken = yaml.safe_load(yaml.safe_dump(api))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    assert "livenesProbe" in (schema_errors(broken, KUBERNETES_VERSIONS[-1]) or "")


def test_everything_lands_in_the_namespace(objects: list[Manifest]) -> None:
    namespace = one(objects, "Namespace", kustomization(K8S)["namespace"])
    for o in objects:
        if o is not namespace:
            assert o["metadata"]["namespace"] == namespace["metadata"]["name"], o["metadata"]["name"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl is not installed: rendered by tests only"
)
def test_kubectl_kustomize_renders_the_same_objects(objects: list[Manifest]) -> None:
    done = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rendered = [d for d in yaml.safe_load_all(done.stdout) if d]

    def identity(o: Manifest) -> tuple[str, str, str | None]:
        return o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")

    assert sorted(map(identity, rendered)) == sorted(map(identity, objects))
    images = {c["image"] for o in rendered for c in containers(o)}
    assert images == {c["image"] for o in objects for c in containers(o)}


# --- configuration ------------------------------------------------------------------------------------


def test_configmap_and_secret_set_only_settings(config: dict[str, str], secret: dict[str, str]) -> None:
    assert unknown_variables(config) == set()
    assert unknown_variables(secret) == set()
    assert set(config).isdisjoint(secret)


@pytest.mark.parametrize("name", ["activity-api", "activity-consumer"])
def test_every_setting_without_a_default_is_provided(
    objects: list[Manifest], config: dict[str, str], secret: dict[str, str], name: str
) -> None:
    env = {e["name"] for e in container(one(objects, "Deployment", name)).get("env", [])}
    assert unknown_variables(env) == set()
    assert missing_required(set(config) | set(secret) | env) == set()


@pytest.mark.parametrize("name", ["activity-api", "activity-consumer"])
def test_the_settings_given_are_valid(
    objects: list[Manifest],
    config: dict[str, str],
    secret: dict[str, str],
    name: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    env = {e["name"]: e["value"] for e in container(one(objects, "Deployment", name)).get("env", [])}
    settings = load_settings({**config, **secret, **env}, monkeypatch, tmp_path)
    assert settings.kafka.topic_partitions == int(setting("KAFKA_TOPIC_PARTITIONS", config))


def test_connection_strings_and_keys_are_in_the_secret_not_the_configmap(
    config: dict[str, str], secret: dict[str, str]
) -> None:
    assert {"MONGODB_URI", "AUTH_API_KEYS"} <= set(secret)
    assert "MONGODB_URI" not in config and "AUTH_API_KEYS" not in config


def test_the_example_secret_holds_only_marked_placeholders(secret: dict[str, str]) -> None:
    for name, value in secret.items():
        assert "CHANGE-ME" in value, name


def test_the_api_refuses_to_start_with_the_example_secret_s_keys(
    objects: list[Manifest],
    config: dict[str, str],
    secret: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    env = {
        e["name"]: e["value"] for e in container(one(objects, "Deployment", "activity-api")).get("env", [])
    }
    settings = load_settings({**config, **secret, **env}, monkeypatch, tmp_path)
    assert settings.app_env == "production"
    with pytest.raises(InsecureConfiguration, match="refusing to start"):
        HttpSecurity.from_settings(settings.auth, settings.api, development=False)


@pytest.mark.parametrize("name", ["activity-api", "activity-consumer"])
def test_processes_read_the_configmap_and_the_secret(objects: list[Manifest], name: str) -> None:
    refs = container(one(objects, "Deployment", name))["envFrom"]
    assert {r["configMapRef"]["name"] for r in refs if "configMapRef" in r} == {"activity-service-config"}
    assert {r["secretRef"]["name"] for r in refs if "secretRef" in r} == {"activity-service-secrets"}


# --- both Deployments ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["activity-api", "activity-consumer"])
def test_runs_the_image_as_its_non_root_user_on_a_read_only_filesystem(
    objects: list[Manifest], name: str
) -> None:
    deployment = one(objects, "Deployment", name)
    pod, main = pod_spec(deployment), container(deployment)
    user = stages((ROOT / "Dockerfile").read_text())[-1].last("USER")
    assert user is not None
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == int(user.args.split(":")[0])
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert main["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["automountServiceAccountToken"] is False


@pytest.mark.parametrize("name", ["activity-api", "activity-consumer"])
def test_requests_and_limits_are_set(objects: list[Manifest], name: str) -> None:
    resources = container(one(objects, "Deployment", name))["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"])


@pytest.mark.parametrize(("name", "command"), [("activity-api", "api"), ("activity-consumer", "consumer")])
def test_runs_a_command_of_the_console_script(objects: list[Manifest], name: str, command: str) -> None:
    main = container(one(objects, "Deployment", name))
    assert "command" not in main  # the image's ENTRYPOINT, activity-service, stays
    assert main["args"][0] == command and commands.accepts(main["args"])


@pytest.mark.parametrize("name", ["activity-api", "activity-consumer"])
def test_each_deployment_has_a_disruption_budget_selecting_its_pods(
    objects: list[Manifest], name: str
) -> None:
    labels = one(objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
    budgets = [
        b
        for b in objects
        if b["kind"] == "PodDisruptionBudget"
        and b["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ]
    assert len(budgets) == 1


# --- the API ------------------------------------------------------------------------------------------


def test_api_probes_liveness_and_readiness(api: Manifest) -> None:
    main = container(api)
    assert main["livenessProbe"]["httpGet"]["path"] == "/health"
    assert main["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert main["startupProbe"]["httpGet"]["path"] == "/health"


def test_api_listens_on_every_interface_on_its_configured_port(api: Manifest, config: dict[str, str]) -> None:
    main = container(api)
    assert main["args"][main["args"].index("--host") + 1] == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports["http"] == int(setting("API_PORT", config))
    annotations = api["spec"]["template"]["metadata"]["annotations"]
    assert (
        annotations["prometheus.io/scrape"] == "true"
        and int(annotations["prometheus.io/port"]) == ports["http"]
    )


def test_api_terminates_gracefully(api: Manifest) -> None:
    pause = int(container(api)["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod_spec(api)["terminationGracePeriodSeconds"] > pause + API_DRAIN_SECONDS


def test_service_routes_to_the_api_pods(objects: list[Manifest], api: Manifest) -> None:
    service = one(objects, "Service", "activity-api")
    assert service["spec"]["selector"].items() <= api["spec"]["template"]["metadata"]["labels"].items()
    port_names = {p["name"] for p in container(api)["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names


def test_autoscaler_scales_the_api_and_keeps_two_for_the_disruption_budget(
    objects: list[Manifest], api: Manifest
) -> None:
    hpa = one(objects, "HorizontalPodAutoscaler", "activity-api")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", api["metadata"]["name"])
    budget = one(objects, "PodDisruptionBudget", "activity-api")
    assert hpa["spec"]["minReplicas"] > budget["spec"]["minAvailable"]
    assert hpa["spec"]["maxReplicas"] >= hpa["spec"]["minReplicas"]


# --- the consumer -------------------------------------------------------------------------------------


def test_consumer_replicas_never_exceed_the_partitions(consumer: Manifest, config: dict[str, str]) -> None:
    partitions = int(setting("KAFKA_TOPIC_PARTITIONS", config))
    surge = consumer["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
    assert consumer["spec"]["replicas"] + surge <= partitions


def test_consumer_grace_period_covers_a_batch(consumer: Manifest, config: dict[str, str]) -> None:
    # One write attempt, one full backoff, then the dead-letter publish, with room to commit.
    batch = (
        int(setting("MONGODB_TIMEOUT_MS", config)) / 1000
        + float(setting("CONSUMER_RETRY_MAX_SECONDS", config))
        + float(setting("INGEST_PUBLISH_TIMEOUT_SECONDS", config))
    )
    assert pod_spec(consumer)["terminationGracePeriodSeconds"] >= 2 * batch


def test_consumer_exposes_its_metrics_port_to_prometheus(consumer: Manifest) -> None:
    ports = {p["name"]: p["containerPort"] for p in container(consumer)["ports"]}
    annotations = consumer["spec"]["template"]["metadata"]["annotations"]
    assert ports["metrics"] == 9100  # CONSUMER_METRICS_PORT's default; the ConfigMap does not change it
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    assert annotations["prometheus.io/path"] == "/metrics"


def test_files_hold_one_object_each() -> None:
    for entry in kustomization(K8S)["resources"]:
        assert len(load_documents(K8S / entry)) == 1, entry
