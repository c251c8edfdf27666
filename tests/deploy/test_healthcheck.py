"""docker/healthcheck.py, the image's HEALTHCHECK, run for real against a local HTTP server."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "docker" / "healthcheck.py"


class _Server(ThreadingHTTPServer):
    answers: dict[str, int]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.send_response(self.server.answers.get(self.path, 404))
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.answers = {}
    thread = Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def run(role: str, **env: str) -> int:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), role], env=dict(os.environ, **env), capture_output=True, timeout=30
    )
    return done.returncode


def port(server: _Server) -> str:
    return str(server.server_address[1])


def test_api_is_healthy_when_health_answers_200(server: _Server) -> None:
    server.answers["/health"] = 200
    assert run("api", API_PORT=port(server)) == 0


def test_api_is_unhealthy_on_an_error_status(server: _Server) -> None:
    server.answers["/health"] = 503
    assert run("api", API_PORT=port(server)) == 1


def test_unhealthy_when_nothing_listens(server: _Server) -> None:
    closed = port(server)
    server.shutdown()
    server.server_close()
    assert run("api", API_PORT=closed) == 1
    assert run("consumer", CONSUMER_METRICS_PORT=closed) == 1


def test_consumer_is_checked_on_its_metrics_port(server: _Server) -> None:
    server.answers["/metrics"] = 200
    assert run("consumer", CONSUMER_METRICS_PORT=port(server)) == 0
    assert run("api", API_PORT=port(server)) == 1  # /health is not served there


def test_unknown_role_is_refused() -> None:
    assert run("worker") == 2


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healthcheck", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("cmdline", "role"),
    [
        (b"/opt/venv/bin/python\0/opt/venv/bin/activity-service\0consumer\0", "consumer"),
        (b"/opt/venv/bin/python\0/opt/venv/bin/activity-service\0api\0--host\0000.0.0.0\0", "api"),
        (b"/opt/venv/bin/python\0/opt/venv/bin/activity-service\0", "api"),
    ],
)
def test_role_is_read_from_the_command_line_of_pid_1(cmdline: bytes, role: str) -> None:
    assert _module().role_from_cmdline(cmdline) == role
