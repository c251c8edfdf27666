"""Security that needs real processes: one rate-limit budget shared by two API processes through Redis,
and refusing to start open by mistake. (Keys, scopes, per-process limits, proxies, headers and CORS are
tested in-process: tests/http/test_security.py.)"""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.processes import API_KEY, CLI, Deployment, free_port, wait_until
from tests.redis_server import redis_server

WRITE, READ = "activities:write", "activities:read"
READER_KEY = "reader-key-0123456789abcdef"
WRITER_KEY = "writer-key-0123456789abcdef"
HASHED_KEY = "hashed-key-0123456789abcdef"
KEYS = json.dumps(
    [
        {"name": "e2e", "key": API_KEY, "scopes": [WRITE, READ]},
        {"name": "reader", "key": READER_KEY, "scopes": [READ]},
        {"name": "writer", "key": WRITER_KEY, "scopes": [WRITE]},
        {
            "name": "hashed",
            "sha256": hashlib.sha256(HASHED_KEY.encode()).hexdigest(),
            "scopes": [WRITE, READ],
        },
    ]
)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def client_with(base_url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers=bearer(key), timeout=30)


def event(**fields: Any) -> dict[str, Any]:
    return {"userId": f"user-{uuid.uuid4().hex[:8]}", "action": "security_check", **fields}


@pytest.fixture
def redis_uri(tmp_path: Path) -> Iterator[str]:
    with redis_server(tmp_path) as uri:
        yield uri


def test_two_api_processes_sharing_redis_enforce_one_budget(deployment: Deployment, redis_uri: str) -> None:
    limits = {
        "AUTH_API_KEYS": KEYS,
        "RATE_LIMIT_EVENTS_PER_SECOND": "0.01",
        "RATE_LIMIT_BURST": "6",
        "RATE_LIMIT_STORAGE_URI": redis_uri,
    }
    _, first = deployment.start_api(**limits)
    _, second = deployment.start_api(**limits)
    with client_with(first, WRITER_KEY) as a, client_with(second, WRITER_KEY) as b:
        codes = [(a if i % 2 else b).post("/api/activities", json=event()).status_code for i in range(7)]
        assert codes == [202] * 6 + [429]
        assert a.post("/api/activities", json=event()).status_code == 429
        assert b.post("/api/activities", json=event(), headers=bearer(HASHED_KEY)).status_code == 202


def run_api(deployment: Deployment, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "api", "--port", str(free_port())],
        env=deployment.env(**env),
        cwd=deployment.cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_api_refuses_to_start_with_auth_on_and_no_keys(deployment: Deployment) -> None:
    refused = run_api(deployment, AUTH_ENABLED="true", AUTH_API_KEYS="[]")
    assert refused.returncode != 0
    assert "refusing to start" in refused.stderr
    assert "AUTH_API_KEYS" in refused.stderr
    assert "Traceback" not in refused.stderr

    secret = "do-not-print-me-0123456789"
    malformed = run_api(deployment, AUTH_API_KEYS=f'[{{"name": "x", "key": "{secret}"')
    assert malformed.returncode == 2
    assert "api_keys" in malformed.stderr and "not valid JSON" in malformed.stderr
    assert secret not in malformed.stderr + malformed.stdout


def test_the_api_refuses_to_start_with_a_publishable_key_that_could_read(deployment: Deployment) -> None:
    secret = "pk-do-not-print-me-0123456789"
    key = {
        "name": "web",
        "key": secret,
        "scopes": ["activities:write", "activities:read"],
        "publishable": True,
        "origins": ["https://shop.example"],
    }
    refused = run_api(deployment, AUTH_API_KEYS=json.dumps([key]))
    assert refused.returncode == 2
    assert "publishable" in refused.stderr and "remove activities:read" in refused.stderr
    assert secret not in refused.stderr + refused.stdout
    assert "Traceback" not in refused.stderr


UVICORN = str(Path(CLI).with_name("uvicorn"))


def test_served_under_a_root_path_the_api_still_needs_a_key(deployment: Deployment) -> None:
    """``uvicorn --root-path /svc`` (behind a proxy that strips /svc): the server puts the prefix into
    every request's path, the router takes it off again, and the key check decides on the routed path."""
    port = free_port()
    log = (deployment.logs / "uvicorn-root-path.log").open("ab")
    factory = "activity_service.interfaces.http.app:create_app"
    process = subprocess.Popen(
        [UVICORN, "--factory", factory, "--root-path", "/svc", "--port", str(port), "--log-level", "warning"],
        env=deployment.env(),
        cwd=deployment.cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deployment.processes.append(process)
    base_url = f"http://127.0.0.1:{port}"
    wait_until(
        lambda: _answers(f"{base_url}/health/ready"), 60, "uvicorn --root-path", process, deployment.logs
    )
    with httpx.Client(base_url=base_url, timeout=30) as anonymous:
        listing = anonymous.get("/api/activities")
        assert listing.status_code == 401, listing.text
        assert anonymous.post("/api/activities", json=event()).status_code == 401
        assert anonymous.get("/nowhere").status_code == 401
    with client_with(base_url, API_KEY) as keyed:
        assert keyed.get("/api/activities").status_code == 200
        assert keyed.post("/api/activities", json=event()).status_code == 202


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_the_api_refuses_to_start_with_a_key_shipped_in_the_repository(deployment: Deployment) -> None:
    example = json.dumps(
        [{"name": "CHANGE-ME", "key": "CHANGE-ME-generate-a-long-random-key", "scopes": [READ]}]
    )
    refused = run_api(deployment, AUTH_API_KEYS=example)
    assert refused.returncode != 0
    assert "refusing to start" in refused.stderr and "CHANGE-ME" in refused.stderr
    assert "Traceback" not in refused.stderr
    laptop = json.dumps([{"name": "local", "key": "local-dev-key-not-a-secret", "scopes": [READ]}])
    assert "refusing to start" in run_api(deployment, AUTH_API_KEYS=laptop).stderr
