"""Reading the kustomization in k8s/ offline: its resource files, and the objects it renders to.

`render` applies the transformations this kustomization uses (namespace, labels, images) so the tests
look at what a cluster would receive; test_k8s also compares it with `kubectl kustomize` where kubectl
is installed."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from kubernetes_validate import utils as kubernetes_validate

Manifest = dict[str, Any]

# Kinds this kustomization may contain that are not namespaced.
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}


def kustomization(directory: Path) -> Manifest:
    data = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert isinstance(data, dict), "kustomization.yaml is not a mapping"
    return data


def missing_resources(directory: Path) -> list[str]:
    """Entries of `resources` that name no file (or directory with a kustomization) under `directory`."""
    missing = []
    for entry in kustomization(directory).get("resources", []):
        path = directory / entry
        if not (path.is_file() or (path / "kustomization.yaml").is_file()):
            missing.append(entry)
    return missing


def load_documents(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def render(directory: Path) -> list[Manifest]:
    config = kustomization(directory)
    images = {image["name"]: image for image in config.get("images", [])}
    labels = {}
    for entry in config.get("labels", []):
        labels.update(entry.get("pairs", {}))
    rendered = []
    for entry in config.get("resources", []):
        for doc in load_documents(directory / entry):
            doc = copy.deepcopy(doc)
            metadata = doc.setdefault("metadata", {})
            if "namespace" in config and doc["kind"] not in CLUSTER_SCOPED:
                metadata["namespace"] = config["namespace"]
            metadata.setdefault("labels", {}).update(labels)
            for container in containers(doc):
                image = images.get(container["image"].split(":")[0])
                if image is not None:
                    container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
            rendered.append(doc)
    return rendered


def containers(doc: Manifest) -> list[Manifest]:
    pod = doc.get("spec", {}).get("template", {}).get("spec", {})
    return list(pod.get("containers", [])) + list(pod.get("initContainers", []))


def schema_errors(doc: Manifest, kubernetes_version: str) -> str | None:
    """None when `doc` validates against that Kubernetes version's OpenAPI schema, unknown fields refused.

    The schemas ship inside the kubernetes-validate package: nothing is fetched."""
    try:
        kubernetes_validate.validate(doc, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = ".".join(str(p) for p in error.path)
        return f"{doc['kind']}/{doc['metadata']['name']}: {where}: {error.message}"
    except kubernetes_validate.SchemaNotFoundError as error:
        return str(error.message)
    return None


def latest_kubernetes_version() -> str:
    return str(kubernetes_validate.latest_version())
