"""Files the service serves that are not Python (the explorer page and its scripts, the browser SDK)
are declared as package data, so that `pip install .` (the Dockerfile's) puts them in the image; an
editable install would serve them even when they are not."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HTTP = ROOT / "src/activity_service/interfaces/http"


@pytest.mark.parametrize("package", ["explorer", "sdk"])
def test_every_file_served_is_package_data(package: str) -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"][f"activity_service.interfaces.http.{package}"]
    folder = HTTP / package
    declared = {path for pattern in globs for path in folder.glob(pattern)}
    files = {path for path in folder.rglob("*") if path.is_file() and "__pycache__" not in path.parts}
    undeclared = {p for p in files - declared if p.suffix != ".py"}
    assert not undeclared, f"add to [tool.setuptools.package-data]: {sorted(map(str, undeclared))}"
