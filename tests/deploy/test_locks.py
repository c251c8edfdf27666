"""requirements/*.lock, read statically: `make install` and the image install exactly these pins, each
with its files' hashes, so they must satisfy pyproject.toml and agree with each other."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def pins(name: str) -> dict[str, tuple[str, int]]:
    """Each locked distribution: (version, how many hashes it carries)."""
    text = (ROOT / "requirements" / name).read_text()
    found: dict[str, tuple[str, int]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = re.match(r"([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==([^\s;\\]+)", block)
        if match:
            found[canonicalize_name(match[1])] = (match[2], block.count("--hash=sha256:"))
    return found


def test_every_pin_carries_hashes() -> None:
    for lock in ("runtime.lock", "dev.lock"):
        locked = pins(lock)
        assert locked, lock
        assert [name for name, (_, hashes) in locked.items() if hashes == 0] == [], lock


def test_the_locks_satisfy_pyproject() -> None:
    runtime, dev = pins("runtime.lock"), pins("dev.lock")
    for requirement in map(Requirement, PYPROJECT["dependencies"]):
        for locked in (runtime, dev):
            version, _ = locked[canonicalize_name(requirement.name)]
            assert requirement.specifier.contains(version, prereleases=True), (requirement, version)
    for requirement in map(Requirement, PYPROJECT["optional-dependencies"]["dev"]):
        version, _ = dev[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version, prereleases=True), (requirement, version)


def test_the_image_gets_the_same_versions_as_the_tests_and_no_dev_tool() -> None:
    runtime, dev = pins("runtime.lock"), pins("dev.lock")
    assert {name: version for name, (version, _) in runtime.items()} == {
        name: dev[name][0] for name in runtime
    }
    assert not {"pytest", "mypy", "ruff", "schemathesis", "uv"} & set(runtime)


def test_make_install_installs_the_dev_lock_with_hashes_and_the_project_without_resolving() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r requirements/dev.lock" in makefile
    assert "--no-deps -e ." in makefile
    assert "-e '.[dev]'" not in makefile
